#!/bin/sh
# 21-l7mark-live-swap: rule tables swapped through the REST API under load, with no packet left
# unclassified. While 3 clients send 1200 ICP queries, the table is replaced 30 times (PUT with
# If-Match) between two documents that send the cache URLs to different marks. Every query is
# answered; every one went through l7mark (received = sent, nothing bypassed: the kernel's queue
# counters agree, no drops); every one got a rule's mark (none unparseable, none defaulted), and
# the marks counted after the queue add up to the queries sent.
. "$L7M_REPO/integration/netns/lib.sh"
. "$L7M_REPO/integration/netns/l7mark-lib.sh"

step "ICP responder on the VIP, mark counters after the queue, l7mark with its API"
lab_icp_setup 100 120 130
doc() { # MARK
    printf '{"default_mark": 100, "rules": [{"id": "cache", "icp": true, "mark": %s}]}' "$1"
}
doc 120 > "$LAB_DIR/rules.json"
lab_config "[[service]]
name = \"icp\"
vip = \"$VIP_L7\"
port = 3130
proto = \"icp\"
forwarding = \"dr\"" > "$LAB_DIR/l7mark.toml"
lab_l7mark_start "$LAB_DIR/l7mark.toml" || fatal "l7mark did not start"
api() { dir_exec curl -s --max-time 5 "$@"; }

step "1200 queries from 3 clients while the table is swapped 30 times"
urls=""; i=1
while [ $i -le 40 ]; do urls="$urls http://cdn.example.net/o$i"; i=$((i + 1)); done
pids=""
for c in 1 2 3; do
    ( n=0; while [ $n -lt 10 ]; do
          # shellcheck disable=SC2086
          client_exec "$TESTKIT" icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:$((40000 + c))" --timeout-ms 3000 $urls
          n=$((n + 1))
      done ) > "$LAB_DIR/q$c.txt" 2>&1 &
    pids="$pids $!"
done
swaps=0; i=0
while [ $i -lt 30 ]; do
    tag=$(api -D - -o /dev/null http://127.0.0.1:9180/v1/rules | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' | tr -d '\r')
    m=$([ $((i % 2)) = 0 ] && echo 130 || echo 120)
    code=$(api -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' -H "If-Match: $tag" \
        --data "$(doc $m)" http://127.0.0.1:9180/v1/rules)
    [ "$code" = 200 ] && swaps=$((swaps + 1))
    i=$((i + 1)); sleep 0.05
done
# shellcheck disable=SC2086
wait $pids
expect_eq "30 swaps accepted" "$swaps" 30
answered=$(cat "$LAB_DIR"/q1.txt "$LAB_DIR"/q2.txt "$LAB_DIR"/q3.txt | grep -c '^REPLY')
expect_eq "every query answered" "$answered" 1200

step "no packet unclassified"
expect_eq "l7mark received every query" "$(lab_metric_wait l7mark_packets_received_total 1200)" 1200
expect_eq "every one got a rule's mark" "$(lab_metric 'l7mark_verdicts_total{outcome="marked"}')" 1200
expect_eq "none defaulted" "$(lab_metric 'l7mark_verdicts_total{outcome="default"}')" 0
expect_eq "none unparseable" "$(lab_metric 'l7mark_verdicts_total{outcome="unparseable"}')" 0
expect_eq "the kernel delivered every queued packet (undelivered estimate)" \
    "$(lab_metric l7mark_nfqueue_undelivered_estimate)" 0
m120=$(nft_counter inet probe after_queue m120); m130=$(nft_counter inet probe after_queue m130)
echo "after the queue: mark 120: $m120, mark 130: $m130, default: $(nft_counter inet probe after_queue m100)"
expect_eq "marks 120 + 130 = queries sent (each saw one table or the other)" "$((m120 + m130))" 1200
expect_ge "both tables were in force during the run (mark 120)" "$m120" 1
expect_ge "both tables were in force during the run (mark 130)" "$m130" 1
expect_eq "no query fell to the default mark" "$(nft_counter inet probe after_queue m100)" 0
expect_ge "table version advanced" "$(lab_metric l7mark_table_version)" 31
lab_l7mark_stop

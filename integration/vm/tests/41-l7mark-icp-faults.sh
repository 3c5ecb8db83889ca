#!/bin/sh
# 41-l7mark-icp-faults: l7mark never becomes the outage (real IPVS, same setup as 40).
#  * malformed, truncated, oversized and hostile datagrams get the default mark (they reach the
#    default cache, rs1) and are counted as unparseable;
#  * kill -9 of the daemon while queries flow: queries keep being answered (queue bypass + the
#    default mark set before the queue); a restart resumes per-URL classification;
#  * queue overload (daemon stopped with SIGSTOP, tiny queue): the kernel fails open, every query
#    is still answered; after SIGCONT the queued ones are verdicted.
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
need_bin l7mark
need_bin l7mark-testkit
. "$L7M_REPO/integration/vm/l7mark-lib.sh"

icp_caches_up
icp_ipvs_services
icp_rules > rules.json
icp_config > l7mark.toml
ICP_QUEUE_MAXLEN=8 icp_config > l7mark-small.toml
l7mark_start l7mark.toml || fatal "l7mark did not start"
urls=$(icp_urls 20)
# shellcheck disable=SC2086
icp_expected rules.json $urls > expected.txt

step "malformed datagrams: default mark (rs1), counted"
client_exec l7mark-testkit icp-malformed --to "$VIP_L7:3130" --bind "$CLIENT_IP:3131" | tee malformed.txt
sent=$(grep -c '^SENT' malformed.txt)
expect_eq "9 malformed datagrams sent" "$sent" 9
wait_for 5 sh -c "[ \$(grep -c '^BAD' $L7M_RUN/rs1-icp.log) -ge 8 ]"
expect_ge "the default cache (rs1) received them" "$(grep -c '^BAD' "$L7M_RUN/rs1-icp.log")" 8
expect_eq "no other cache received any" "$(cat "$L7M_RUN/rs2-icp.log" "$L7M_RUN/rs3-icp.log" | grep -c '^BAD')" 0
expect_eq "l7mark counted 9 unparseable datagrams" \
    "$(l7mark_metric 'l7mark_verdicts_total{outcome="unparseable"}')" 9
check "the daemon is still running" kill -0 "$(cat "$L7MARK_PID")"
# shellcheck disable=SC2086
client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" $urls > r1.txt
expect_eq "after the bad input, every query still routed to its owner" "$(icp_misrouted expected.txt r1.txt)" 0

step "kill -9 while queries flow: answered on the default mark, then classified again"
# a stream in the background: 60 queries, one every 0.1 s
( i=0; while [ $i -lt 60 ]; do
      client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3132" --timeout-ms 1000 \
          "http://cdn.example.net/stream/$i" 2>&1 | head -1
      i=$((i + 1)); sleep 0.1
  done ) > stream.txt &
spid=$!
sleep 1.5
l7mark_kill || fail "queues still bound after kill -9"
check "l7mark's nft table survives the crash (bypass keeps traffic flowing)" nft list table inet l7mark
# shellcheck disable=SC2086
client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" $urls > r2.txt
expect_eq "without the daemon every query is answered" "$(grep -c '^REPLY' r2.txt)" 21
expect_eq "... by the default cache (rs1, bypass with the default mark)" "$(grep -c "sender $RS1_IP\$" r2.txt)" 21
l7mark_start l7mark.toml || fatal "restart failed"
# shellcheck disable=SC2086
client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" $urls > r3.txt
expect_eq "after the restart classification resumes (per-URL owners)" "$(icp_misrouted expected.txt r3.txt)" 0
wait $spid
expect_eq "the background stream lost no query across kill and restart" "$(grep -c '^REPLY' stream.txt)" 60

step "queue overload: stopped daemon, queue length 8, 42 queries -> fail-open"
l7mark_stop
l7mark_start l7mark-small.toml || fatal "start with max_len 8"
kill -STOP "$(cat "$L7MARK_PID")"
# shellcheck disable=SC2086
client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" --timeout-ms 3000 $urls $urls > r4.txt &
qpid=$!
sleep 1.5
held=$(awk '$1 == 100 || $1 == 101 {s += $3} END {print s + 0}' /proc/net/netfilter/nfnetlink_queue)
expect_ge "the kernel holds queued queries for the stopped daemon" "$held" 1
kill -CONT "$(cat "$L7MARK_PID")"
wait $qpid
expect_eq "every one of 42 queries answered (fail-open beyond the queue length)" "$(grep -c '^REPLY' r4.txt)" 42
expect_ge "most went to the default cache (failed open with the default mark)" "$(grep -c "sender $RS1_IP\$" r4.txt)" 20
l7mark_stop

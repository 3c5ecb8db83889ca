#!/bin/sh
# 20-l7mark-icp: l7mark classifies ICP queries on the host kernel (no IPVS here: the marks are read
# by nft counters at the hook where IPVS would look them up). An ICP responder on the director's VIP
# answers; l7mark's queue is installed with iptables-nft (this kernel has no nft "queue").
#  * per-URL marks equal what `l7mark explain` says, counted per mark;
#  * malformed datagrams get the default mark and are counted as unparseable;
#  * kill -9: queries keep being answered with the default mark (bypass); restart resumes.
. "$L7M_REPO/integration/netns/lib.sh"
. "$L7M_REPO/integration/netns/l7mark-lib.sh"

step "ICP responder on the VIP, mark counters after the queue, l7mark"
lab_icp_setup 100 120 121 122
cat > "$LAB_DIR/rules.json" <<EOF
{ "default_mark": 100,
  "rules": [
    {"id": "nocache", "icp": true, "host": "*.nocache.example", "mark": 100},
    {"id": "cache", "icp": true, "url_hash": {"marks": [120, 121, 122],
       "members": ["cache1.example.net", "cache2.example.net", "cache3.example.net"]}} ] }
EOF
lab_config "[[service]]
name = \"icp\"
vip = \"$VIP_L7\"
port = 3130
proto = \"icp\"
forwarding = \"dr\"" > "$LAB_DIR/l7mark.toml"
lab_l7mark_start "$LAB_DIR/l7mark.toml" || fatal "l7mark did not start"

step "30 queries from one source port; marks as l7mark explain says"
urls=""; i=1
while [ $i -le 30 ]; do urls="$urls http://cdn.example.net/obj/$i.jpg"; i=$((i + 1)); done
want120=0; want121=0; want122=0
for u in $urls; do
    "$TESTKIT" icp-encode "$u" > "$LAB_DIR/q.bin"
    m=$("$L7MARK" explain --rules "$LAB_DIR/rules.json" --proto icp --payload "$LAB_DIR/q.bin" | sed 's/.*"mark":\([0-9]*\).*/\1/')
    case $m in 120) want120=$((want120 + 1)) ;; 121) want121=$((want121 + 1)) ;; 122) want122=$((want122 + 1)) ;; esac
done
# shellcheck disable=SC2086
client_exec "$TESTKIT" icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" $urls > "$LAB_DIR/r.txt"
expect_eq "30 replies" "$(grep -c '^REPLY' "$LAB_DIR/r.txt")" 30
expect_eq "mark 120 counted" "$(nft_counter inet probe after_queue m120)" "$want120"
expect_eq "mark 121 counted" "$(nft_counter inet probe after_queue m121)" "$want121"
expect_eq "mark 122 counted" "$(nft_counter inet probe after_queue m122)" "$want122"
expect_eq "nothing fell to the default" "$(nft_counter inet probe after_queue m100)" 0
expect_eq "l7mark counted 30 marked" "$(lab_metric 'l7mark_verdicts_total{outcome="marked"}')" 30

step "malformed datagrams: default mark, counted"
client_exec "$TESTKIT" icp-malformed --to "$VIP_L7:3130" --bind "$CLIENT_IP:3131" >/dev/null
expect_eq "9 unparseable" "$(lab_metric_wait 'l7mark_verdicts_total{outcome="unparseable"}' 9)" 9
expect_ge "they carried the default mark" "$(nft_counter inet probe after_queue m100)" 8

step "kill -9: answered with the default mark; restart resumes"
lab_l7mark_kill || fail "queue still bound"
before=$(nft_counter inet probe after_queue m100)
# shellcheck disable=SC2086
client_exec "$TESTKIT" icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" $urls > "$LAB_DIR/r2.txt"
expect_eq "30 replies without the daemon" "$(grep -c '^REPLY' "$LAB_DIR/r2.txt")" 30
expect_eq "all 30 with the default mark (bypass)" "$(( $(nft_counter inet probe after_queue m100) - before ))" 30
lab_l7mark_start "$LAB_DIR/l7mark.toml" || fatal "restart"
b120=$(nft_counter inet probe after_queue m120)
# shellcheck disable=SC2086
client_exec "$TESTKIT" icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" $urls > "$LAB_DIR/r3.txt"
expect_eq "after the restart mark 120 again for its URLs" "$(( $(nft_counter inet probe after_queue m120) - b120 ))" "$want120"
lab_l7mark_stop

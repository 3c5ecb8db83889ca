# shellcheck shell=sh
# integration/netns/l7mark-lib.sh -- l7mark in the host netns lab (sourced after lib.sh).
#
# The host kernel has no IPVS and no nft "queue" expression, so l7mark runs with [nft] manage =
# false and this file installs the equivalent rules: nft for everything but the queueing, and
# iptables-nft NFQUEUE for the queues (one worker: queue numbers base + kind). nf_nat DNAT by mark,
# at the output hook for the binder's server SYN (where IPVS's ip_vs_in_hook acts on LOCAL_OUT),
# stands in for IPVS. A stand-in, said in every test that uses it.
#
#   L7MARK / TESTKIT            the release binaries (built by test-all.sh before this suite)
#   lab_l7mark_start CONFIG     start the daemon in the director; wait for its queues
#   lab_l7mark_stop / lab_l7mark_kill
#   lab_metric NAME             GET /metrics (director's API): the sum of NAME's samples
#   lab_metric_wait NAME MIN    wait (3 s) until that sum reaches MIN (binder gauges lag 200 ms)
#   lab_binder_rules            rules for VIP:80 (binder) with DNAT-by-mark stand-in (110 rs1,
#                               111 rs2, 100 rs3)
#   lab_binder_servers          testkit HTTP servers on rs1..rs3 :80 (names rs1..rs3)
#   lab_icp_setup MARK...       ICP responder on the director's VIP:3130, a probe chain counting
#                               each MARK after the queue (nft_counter inet probe after_queue mMARK),
#                               and l7mark's ICP queue (iptables-nft, default mark 100, bypass)

L7MARK=${L7MARK:-$L7M_REPO/target/release/l7mark}
TESTKIT=${TESTKIT:-$L7M_REPO/target/release/l7mark-testkit}
[ -x "$L7MARK" ] || fatal "$L7MARK missing: cargo build --release first"
[ -x "$TESTKIT" ] || fatal "$TESTKIT missing: cargo build --release first"
LAB_PID=$L7M_RUN/l7mark.pid
LAB_LOG=$L7M_RUN/l7mark.log
LAB_DIR=$L7M_RUN/l7mark
mkdir -p "$LAB_DIR"

_lab_ready() { [ "$(dir_exec grep -c . /proc/net/netfilter/nfnetlink_queue 2>/dev/null)" -gt 0 ]; }
lab_l7mark_start() {
    bg_start "$LAB_PID" "$LAB_LOG" "$L7M_IP" netns exec "$L7M_DIR_NS" "$L7MARK" run --config "$1"
    wait_for 10 _lab_ready || { cat "$LAB_LOG"; return 1; }
}
lab_l7mark_stop() { bg_stop "$LAB_PID"; }
lab_l7mark_kill() {
    [ -f "$LAB_PID" ] && kill -9 "$(cat "$LAB_PID")" 2>/dev/null
    rm -f "$LAB_PID"
    wait_for 5 sh -c "! $L7M_IP netns exec $L7M_DIR_NS grep -q . /proc/net/netfilter/nfnetlink_queue"
}
lab_metric() {
    dir_exec curl -s --max-time 3 http://127.0.0.1:9180/metrics | awk -v n="$1" '
        # the sum over every sample of that name (per-worker series), or nothing if absent
        index($0, n) == 1 && (substr($0, length(n) + 1, 1) ~ /[{ ]/ || n ~ /}$/) {s += $NF; f = 1}
        END {if (f) print s}'
}

lab_config() { # extra-service-TOML
    cat <<EOF
rules_file = "$LAB_DIR/rules.json"
[marks]
min = 100
max = 999
$1
[queues]
base = 100
workers = 1
[api]
listen = "127.0.0.1:9180"
[nft]
manage = false
[binder]
# no IPVS on the host kernel: nf_nat stands in (see integration/netns/l7mark-lib.sh)
require_ipvs = false
hold_timeout_ms = 3000
on_hold_timeout = "drop"
EOF
}

lab_binder_servers() {
    for _r in $RS_ALL; do
        rs_http_stop "$_r" 80
        bg_start "$L7M_RUN/$_r-tk.pid" "$L7M_RUN/$_r-tk.log" \
            "$L7M_IP" netns exec "$(rs_ns "$_r")" "$TESTKIT" http-server --listen 0.0.0.0:80 --name "$_r"
    done
    for _r in $RS_ALL; do wait_for 5 grep -q listening "$L7M_RUN/$_r-tk.log" || fail "testkit server $_r"; done
}

# The binder's ruleset (nft-rules/http-tls-nat.nft's shape for one worker) with iptables-nft doing
# the queueing. Kinds: 1 client-invalid, 2 server-syn, 3 server-synack, 4 pre-seqadj, 5 done-gate.
lab_binder_rules() {
    dir_exec sysctl -q -w net.netfilter.nf_conntrack_tcp_loose=0 >/dev/null 2>&1 || {
        dir_exec iptables-nft -t raw -L >/dev/null 2>&1
        dir_exec sysctl -q -w net.netfilter.nf_conntrack_tcp_loose=0 >/dev/null
    } || fatal "nf_conntrack_tcp_loose"
    dir_nft -f - <<EOF || fatal "nft part of the binder ruleset"
table inet l7mark {
    chain raw_prerouting {
        type filter hook prerouting priority raw; policy accept;
        ip daddr $VIP_L7 tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn counter notrack
    }
    # mark-bit steering for the two race queues (iptables cannot match ct status)
    chain steer_in {
        type filter hook input priority -151; policy accept;
        ip daddr $VIP_L7 tcp dport 80 ct state established,new ct status & 0x40 == 0 tcp flags & (syn|ack) == ack counter meta mark set 0x40000000
        ip daddr $VIP_L7 tcp dport 80 ct state established ct status & 0x40 == 0x40 ct mark & 0x80000000 == 0 tcp flags & (syn|ack) == ack counter meta mark set 0x20000000
    }
    chain synack_window {
        type filter hook output priority -160; policy accept;
        ip saddr $VIP_L7 tcp sport 80 tcp flags & (syn|ack) == (syn|ack) counter tcp window set 29200
    }
    # stand-in for IPVS: DNAT by the released server SYN's mark at LOCAL_OUT
    chain ipvs_standin {
        type nat hook output priority -100; policy accept;
        meta mark 110 counter dnat ip to $RS1_IP comment "m110"
        meta mark 111 counter dnat ip to $RS2_IP comment "m111"
        meta mark 100 counter dnat ip to $RS3_IP comment "m100"
    }
    chain nat_post {
        type nat hook postrouting priority srcnat; policy accept;
    }
    chain syn_proxy {
        type filter hook input priority filter; policy accept;
        ip daddr $VIP_L7 tcp dport 80 ct state invalid,untracked counter synproxy mss 1460 wscale 7 timestamp sack-perm
        ip daddr $VIP_L7 tcp dport 80 ct state invalid counter drop
    }
}
EOF
    _ipt="dir_exec iptables-nft -w"
    $_ipt -t mangle -A OUTPUT -d "$VIP_L7" -p tcp --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN -j MARK --set-mark 100 || fail ipt
    $_ipt -t mangle -A OUTPUT -d "$VIP_L7" -p tcp --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 102 --queue-bypass || fail ipt
    $_ipt -t mangle -A INPUT -d "$VIP_L7" -p tcp --dport 80 -m conntrack --ctstate INVALID --tcp-flags SYN NONE -j NFQUEUE --queue-num 101 --queue-bypass || fail ipt
    $_ipt -t mangle -A INPUT -d "$VIP_L7" -p tcp --dport 80 -m mark --mark 0x40000000/0x40000000 -j NFQUEUE --queue-num 104 || fail ipt
    $_ipt -t mangle -A INPUT -d "$VIP_L7" -p tcp --dport 80 -m mark --mark 0x20000000/0x20000000 -j NFQUEUE --queue-num 105 --queue-bypass || fail ipt
    $_ipt -t mangle -A FORWARD -p tcp --sport 80 --tcp-flags SYN,ACK,RST SYN,ACK -m conntrack --ctorigdst "$VIP_L7" -j NFQUEUE --queue-num 103 --queue-bypass || fail ipt
}
_lab_metric_ge() { _v=$(lab_metric "$1"); [ -n "$_v" ] && [ "${_v%.*}" -ge "$2" ]; }
lab_metric_wait() { wait_for 3 _lab_metric_ge "$1" "$2"; lab_metric "$1"; }

lab_icp_setup() { # MARK...
    bg_start "$L7M_RUN/icp.pid" "$L7M_RUN/icp.log" \
        "$L7M_IP" netns exec "$L7M_DIR_NS" "$TESTKIT" icp-server --listen "$VIP_L7:3130" --name dir --sender "$CLIENT_GW"
    wait_for 5 grep -q listening "$L7M_RUN/icp.log" || fatal "icp server"
    {
        echo "table inet probe {"
        echo "    chain after_queue {"
        echo "        type filter hook prerouting priority -100; policy accept;"
        for _m in "$@"; do echo "        udp dport 3130 meta mark $_m counter comment \"m$_m\""; done
        echo "    }"
        echo "}"
    } | dir_nft -f - || fatal "probe table"
    dir_exec iptables-nft -w -t mangle -A PREROUTING -d "$VIP_L7" -p udp --dport 3130 -j MARK --set-mark 100 || fatal ipt
    dir_exec iptables-nft -w -t mangle -A PREROUTING -d "$VIP_L7" -p udp --dport 3130 -j NFQUEUE --queue-num 100 --queue-bypass || fatal ipt
}

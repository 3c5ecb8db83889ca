#!/bin/sh
# 11-nfqueue-bypass: "iptables-nft -j NFQUEUE --queue-bypass" with no consumer passes traffic
# (the host kernel has no nft "queue" expression; iptables-nft uses the xt NFQUEUE target).
#  * with --queue-bypass: the request is answered, the NFQUEUE rule counts, and the next rule of the
#    same chain does not (the queue verdict ends the chain; accept resumes at the next base chain)
#  * without bypass: packets are dropped, the request fails
#  * --queue-balance with --queue-cpu-fanout and bypass: passes too
# The backend is reached through DNAT by mark (IPVS stand-in, see 10-mark-dnat).
. "$L7M_REPO/integration/netns/lib.sh"

ipt() { dir_exec iptables-nft -w -t mangle "$@"; }

step "mark + DNAT (after the mangle chain)"
dir_nft -f - <<EOF || fatal "nft ruleset"
table ip l7m {
    chain mark_pre {
        type filter hook prerouting priority -140; policy accept;
        ip daddr $VIP_L7 tcp dport 81 counter meta mark set 110 comment "mark"
    }
    chain nat_pre {
        type nat hook prerouting priority dstnat; policy accept;
        meta mark 110 meta l4proto tcp counter dnat to $RS1_IP:80 comment "dnat110"
    }
}
EOF
expect_eq "no queue listener" "$(dir_exec cat /proc/net/netfilter/nfnetlink_queue | grep -c .)" 0

step "NFQUEUE --queue-bypass, no consumer: passes"
ipt -A PREROUTING -d "$VIP_L7" -p tcp --dport 81 -j NFQUEUE --queue-num 5 --queue-bypass || fatal "iptables NFQUEUE rule"
ipt -A PREROUTING -d "$VIP_L7" -p tcp --dport 81 || fatal "iptables counting rule"
ipt -L PREROUTING -v -n -x --line-numbers
expect_eq "requests answered" "$(who_answers 2 "http://$VIP_L7:81/")" "rs1 rs1"
ipt -L PREROUTING -v -n -x --line-numbers
expect_ge "NFQUEUE rule counted packets" "$(ipt_counter mangle PREROUTING 1)" 10
expect_eq "rule after NFQUEUE never matched (the queue verdict ends the chain)" "$(ipt_counter mangle PREROUTING 2)" 0
expect_ge "next base chain (nft mark) saw the packets" "$(nft_counter ip l7m mark_pre mark)" 10

step "NFQUEUE without bypass: dropped"
ipt -F PREROUTING
ipt -A PREROUTING -d "$VIP_L7" -p tcp --dport 81 -j NFQUEUE --queue-num 5
if HTTP_TIMEOUT=3 http_get "$NS_CLIENT" "http://$VIP_L7:81/" > /dev/null 2>&1; then
    fail "request answered without --queue-bypass"
else
    ok "request not answered without --queue-bypass"
fi
expect_ge "NFQUEUE rule counted the dropped SYN(s)" "$(ipt_counter mangle PREROUTING 1)" 1

step "--queue-balance 5:6 --queue-cpu-fanout --queue-bypass"
ipt -F PREROUTING
ipt -A PREROUTING -d "$VIP_L7" -p tcp --dport 81 -j NFQUEUE --queue-balance 5:6 --queue-cpu-fanout --queue-bypass \
    || fail "iptables NFQUEUE balance/fanout rule"
ipt -S PREROUTING
expect_eq "request answered" "$(http_get "$NS_CLIENT" "http://$VIP_L7:81/a.html")" rs1
expect_ge "balance rule counted packets" "$(ipt_counter mangle PREROUTING 1)" 5

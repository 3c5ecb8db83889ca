#!/bin/sh
# 20-nft-queue-bypass: the nft "queue" statement with no userspace consumer (the state l7mark's
# rules are in while the daemon is down or restarting), in front of an IPVS fwmark service.
#  * "queue num N bypass": packets pass, the rule counts them, the request is answered
#  * the queue verdict ends the chain: a rule after it in the same chain never sees the packet,
#    while the next base chain (mark, at priority mangle) does -- NF_ACCEPT resumes at the next hook
#  * "queue num N" without bypass: packets are dropped, the request times out
#  * "fanout" loads in both syntaxes and passes with bypass
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
Q=7

cat > svc.conf <<EOF
service 110 tcp nat rr
    real $RS1_IP:80
    real $RS2_IP:80
EOF
run "$L7MARK_IPVS" apply svc.conf || fail "l7mark-ipvs apply"

load_rules() { # QUEUE-STATEMENT
    nft delete table inet l7m_q 2>/dev/null
    nft -f - <<NFT
table inet l7m_q {
    chain q {
        type filter hook prerouting priority raw; policy accept;
        ip daddr $VIP_L7 tcp dport 80 counter $1 comment "queue"
        ip daddr $VIP_L7 tcp dport 80 counter comment "after-queue"
    }
    chain marking {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $VIP_L7 tcp dport 80 counter meta mark set 110 comment "mark"
    }
}
NFT
}

step "no consumer bound to any queue"
cat /proc/net/netfilter/nfnetlink_queue
expect_eq "nfnetlink_queue has no listener" "$(grep -c . /proc/net/netfilter/nfnetlink_queue)" 0

step "queue num $Q bypass: passes"
load_rules "queue num $Q bypass" || fail "nft: queue bypass rule"
nft list table inet l7m_q
got=$(who_answers 2 "http://$VIP_L7/")
echo "answers: $got"
expect_eq "both requests answered through IPVS" "$(count_words ERR "$got")" 0
expect_ge "queue rule counted packets" "$(nft_counter inet l7m_q q queue)" 2
expect_eq "rule after the queue statement never matched (queue ends the chain)" "$(nft_counter inet l7m_q q after-queue)" 0
expect_ge "next base chain (mark) saw the packets" "$(nft_counter inet l7m_q marking mark)" 2
conns_before=$(ipvsadm -Lnc | grep -c "^TCP .*$VIP_L7:80")

step "queue num $Q without bypass: dropped"
load_rules "queue num $Q" || fail "nft: queue rule"
if out=$(HTTP_TIMEOUT=3 http_get "$NS_CLIENT" "http://$VIP_L7/" 2>&1); then
    fail "request answered without bypass: $out"
else
    ok "request not answered without bypass"
fi
nft list table inet l7m_q
expect_ge "queue rule counted the dropped SYN(s)" "$(nft_counter inet l7m_q q queue)" 1
expect_eq "mark chain saw nothing" "$(nft_counter inet l7m_q marking mark)" 0
expect_eq "IPVS saw no new connection" "$(ipvsadm -Lnc | grep -c "^TCP .*$VIP_L7:80")" "$conns_before"

step "fanout: both syntaxes load; with bypass traffic passes"
load_rules "queue num 7-8 fanout" || fail "nft: 'queue num 7-8 fanout'"
nft list chain inet l7m_q q
check "listed with fanout" sh -c "nft list chain inet l7m_q q | grep -q 'fanout'"
load_rules "queue flags bypass,fanout to 7-8" || fail "nft: 'queue flags bypass,fanout to 7-8'"
nft list chain inet l7m_q q
check "listed with bypass,fanout" sh -c "nft list chain inet l7m_q q | grep -q 'bypass,fanout'"
expect_eq "request passes a fanout+bypass queue" "$(http_get "$NS_CLIENT" "http://$VIP_L7/a.html" 2>&1 | grep -c '^rs[12]$')" 1

step "queue table removed: nothing marks -> the VIP refuses"
nft delete table inet l7m_q
expect_eq "VIP without marks" "$(http_get "$NS_CLIENT" "http://$VIP_L7/" 2>/dev/null || echo refused)" refused

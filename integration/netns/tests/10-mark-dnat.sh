#!/bin/sh
# 10-mark-dnat: marking decides the backend, with DNAT-by-mark standing in for IPVS (the host kernel
# has no IPVS). The director marks by destination port (:81 -> 110, :82 -> 111) in a mangle-priority
# prerouting chain; a nat prerouting chain sends mark 110 to rs1 and mark 111 to rs3, after the mark
# was set -- as IPVS would act on the mark after mangle. Checked by which RS answers and by counters.
. "$L7M_REPO/integration/netns/lib.sh"

step "ruleset in the director"
dir_nft -f - <<EOF || fatal "nft ruleset"
table inet l7m {
    chain mark_pre {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $VIP_L7 tcp dport 81 counter meta mark set 110 comment "m110"
        ip daddr $VIP_L7 tcp dport 82 counter meta mark set 111 comment "m111"
        ip6 daddr $VIP6 tcp dport 81 counter meta mark set 110 comment "m110v6"
    }
    chain nat_pre {
        type nat hook prerouting priority dstnat; policy accept;
        meta mark 110 meta nfproto ipv4 meta l4proto tcp counter dnat ip to $RS1_IP:80 comment "dnat110"
        meta mark 111 meta nfproto ipv4 meta l4proto tcp counter dnat ip to $RS3_IP:80 comment "dnat111"
        meta mark 110 meta nfproto ipv6 meta l4proto tcp counter dnat ip6 to [$RS1_IP6]:80 comment "dnat110v6"
    }
}
EOF
dir_nft list table inet l7m

step "mark 110 -> rs1, mark 111 -> rs3"
expect_eq "VIP:81 (mark 110)" "$(who_answers 3 "http://$VIP_L7:81/")" "rs1 rs1 rs1"
expect_eq "VIP:82 (mark 111)" "$(who_answers 2 "http://$VIP_L7:82/img/x")" "rs3 rs3"
expect_eq "VIP:82 from the second client address" "$(who_answers 1 "http://$VIP_L7:82/" "$CLIENT_IP2")" "rs3"
expect_eq "rs3 saw the second client address" \
    "$(http_from "$CLIENT_IP2" "http://$VIP_L7:82/cgi-bin/info" | awk '{print $NF}')" "remote=$CLIENT_IP2"
expect_eq "IPv6 [VIP6]:81 (mark 110)" "$(http_get "$NS_CLIENT" "http://[$VIP6]:81/a.html")" rs1
expect_eq "unmarked VIP:83 is not forwarded" "$(http_get "$NS_CLIENT" "http://$VIP_L7:83/" 2>/dev/null || echo refused)" refused

step "counters"
dir_nft list table inet l7m
# the nat chain sees only the first packet of each connection: its counter = connections
expect_eq "dnat110 = 3 connections" "$(nft_counter inet l7m nat_pre dnat110)" 3
expect_eq "dnat111 = 4 connections" "$(nft_counter inet l7m nat_pre dnat111)" 4
expect_eq "dnat110v6 = 1 connection" "$(nft_counter inet l7m nat_pre dnat110v6)" 1
expect_ge "m110 marked every packet of its 3 connections" "$(nft_counter inet l7m mark_pre m110)" 15
expect_ge "m111 marked every packet of its 4 connections" "$(nft_counter inet l7m mark_pre m111)" 20

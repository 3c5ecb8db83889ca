#!/bin/sh
# 10-ipvs-fwmark-nat: IPVS fwmark services in NAT mode, created with ipvs-scripts/l7mark-ipvs.
#  * the mark decides the service: on the same VIP:80, mark 110 -> {rs1, rs2}, mark 111 -> {rs3}
#    (nft marks by client source address here; l7mark marks by payload)
#  * persistence (persist 300) keeps one client on one real server; without it rr alternates
#  * IPv6: the same with an ipv6 service on fd00::100
#  * IPVS counters and the connection table (ipvsadm -Ln --stats, -Lnc) agree with the traffic
#  * l7mark-ipvs: check, apply (idempotent, -E on change), show (round trip), remove
. "$L7M_REPO/integration/vm/lib.sh"
# this test is about IPVS itself (no l7mark): persistence on a tcp mark of l7mark's range is allowed
export L7MARK_IPVS_ALLOW_L7_PERSIST=1
cd /tmp/l7m-test || fatal "no test dir"

write_conf() { # PERSIST_OPTION
    cat > svc.conf <<EOF
# test 10: two NAT services selected by mark
service 110 tcp nat rr $1
    real $RS1_IP:80
    real $RS2_IP:80
service 111 tcp nat rr
    real $RS3_IP:80
service 110 tcp nat rr ipv6
    real [$RS1_IP6]:80
    real [$RS2_IP6]:80
EOF
}

step "l7mark-ipvs check + apply"
write_conf "persist 300"
check "l7mark-ipvs check accepts the file" "$L7MARK_IPVS" check svc.conf
run "$L7MARK_IPVS" apply svc.conf || fail "l7mark-ipvs apply"
run ipvsadm -Ln
expect_eq "fwmark 110 real servers" "$(ipvs_dests 110)" "$RS1_IP:80 $RS2_IP:80"
expect_eq "fwmark 111 real servers" "$(ipvs_dests 111)" "$RS3_IP:80"
expect_eq "fwmark 110 ipv6 real servers" "$(ipvs_dests 110 -6)" "[$RS1_IP6]:80 [$RS2_IP6]:80"
check "fwmark 110 is persistent 300 s" sh -c "ipvsadm -Sn | grep -qx -- '-A -f 110 -s rr -p 300'"
check "real servers are in NAT (Masq) mode" sh -c "ipvsadm -Ln -f 110 | grep -q 'Masq'"
out=$("$L7MARK_IPVS" apply svc.conf)
echo "$out"
case $out in *"nothing to do"*) ok "second apply changes nothing (idempotent)" ;; *) fail "second apply did something: $out" ;; esac

step "mark by client source address, same VIP"
nft -f - <<EOF || fail "nft ruleset"
table ip l7m_test {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $VIP_L7 tcp dport 80 ip saddr $CLIENT_IP2 counter meta mark set 111 comment "m111"
        ip daddr $VIP_L7 tcp dport 80 meta mark != 111 counter meta mark set 110 comment "m110"
    }
}
table ip6 l7m_test6 {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip6 daddr $VIP6 tcp dport 80 counter meta mark set 110 comment "m110v6"
    }
}
EOF

step "persistence: one client, one real server"
got=$(who_answers 6 "http://$VIP_L7/")
echo "client $CLIENT_IP: $got"
expect_eq "6 requests, all answered" "$(count_words ERR "$got")" 0
expect_eq "persistence: distinct real servers" "$(distinct "$got")" 1
case $got in rs1*|rs2*) ok "mark 110 served by rs1/rs2" ;; *) fail "mark 110 served by: $got" ;; esac
first=${got%% *}
ipvsadm -Lnc
check "persistence template <client, fwmark 110 (0.0.0.110)> -> $first" \
    sh -c "ipvsadm -Lnc | grep -E '^IP .* $CLIENT_IP:0 +0\.0\.0\.110:0 +$(rs_ip "$first"):0' >/dev/null"

step "mark 111 -> rs3 (second client address)"
got=$(who_answers 3 "http://$VIP_L7/img/x" "$CLIENT_IP2")
echo "client $CLIENT_IP2: $got"
expect_eq "mark 111 answers" "$got" "rs3 rs3 rs3"
check "ipvsadm -Lnc: $CLIENT_IP2 -> VIP -> rs3" \
    sh -c "ipvsadm -Lnc | grep -E '^TCP .* $CLIENT_IP2:[0-9]+ +$VIP_L7:80 +$RS3_IP:80' >/dev/null"
expect_ge "nft rule m111 counted packets" "$(nft_counter ip l7m_test pre m111)" 3

step "IPv6 fwmark service"
got6=""
for _ in 1 2 3 4; do got6="$got6 $(http_get "$NS_CLIENT" "http://[$VIP6]/a.html" 2>/dev/null || echo ERR)"; done
echo "IPv6 client: $got6"
expect_eq "IPv6 requests answered" "$(count_words ERR "$got6")" 0
expect_eq "IPv6 rr over rs1/rs2" "$(distinct "$got6")" 2

step "without persistence: rr alternates"
write_conf ""
run "$L7MARK_IPVS" apply svc.conf || fail "apply without persist"
check "fwmark 110 is no longer persistent" sh -c "! ipvsadm -Sn | grep -q -- '-A -f 110 -s rr -p'"
got=$(who_answers 6 "http://$VIP_L7/")
echo "client $CLIENT_IP: $got"
expect_eq "rs1 answered 3 of 6" "$(count_words rs1 "$got")" 3
expect_eq "rs2 answered 3 of 6" "$(count_words rs2 "$got")" 3
prev=""; alt=1
for w in $got; do [ "$w" = "$prev" ] && alt=0; prev=$w; done
expect_eq "strict alternation" "$alt" 1

step "IPVS statistics"
# 6 (persistent) + 6 (rr) connections on 110; 3 on 111; counters lag up to 2 s
check "FWM 110 counted >= 12 connections" ipvs_stats_wait 110 12
check "FWM 111 counted >= 3 connections" ipvs_stats_wait 111 3
run ipvsadm -Ln --stats
expect_ge "FWM 110 Conns" "$(ipvs_conns 110)" 12
expect_eq "FWM 111 Conns" "$(ipvs_conns 111)" 3
inpk=$(ipvsadm -Ln --stats -f 111 | awk '$1 == "FWM" {print $4}')
expect_ge "FWM 111 InPkts (3 connections x >= 5 packets)" "$inpk" 15

step "show -> the same description; remove"
"$L7MARK_IPVS" show > shown.conf
cat shown.conf
check "show output passes check" "$L7MARK_IPVS" check shown.conf
out=$("$L7MARK_IPVS" apply shown.conf)
case $out in *"nothing to do"*) ok "applying the shown state changes nothing" ;; *) fail "show/apply round trip: $out" ;; esac
run "$L7MARK_IPVS" remove svc.conf || fail "remove"
expect_eq "no service left" "$(ipvsadm -Sn | grep -c '^-A')" 0
expect_eq "the VIP no longer answers" "$(http_get "$NS_CLIENT" "http://$VIP_L7/" 2>/dev/null || echo refused)" refused

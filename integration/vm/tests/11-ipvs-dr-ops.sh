#!/bin/sh
# 11-ipvs-dr-ops: direct routing (DR) and UDP one-packet scheduling (OPS), created with l7mark-ipvs.
#  * fwmark 120: TCP, DR, rr over rs1..rs3 (the real servers own the VIP on lo)
#  * fwmark 121: UDP, DR, rr, ops: datagrams from ONE client socket (one source port) are spread over
#    the real servers one by one; without ops they all stick to one real server (one IPVS connection)
# DR on this topology: each real server sits on its own link behind the director, so its replies
# (source = VIP) come back through the director, which owns the VIP and would drop them as martians;
# accept_local=1 on r1..r3 lets them through (a flat L2 segment would not need this).
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"

write_conf() { # OPS_OPTION
    cat > dr.conf <<EOF
service 120 tcp dr rr
    real $RS1_IP
    real $RS2_IP
    real $RS3_IP
service 121 udp dr rr $1
    real $RS1_IP
    real $RS2_IP
    real $RS3_IP
EOF
}

step "real servers own the VIP $VIP_L4 (DR), director accepts their replies"
for r in $RS_ALL; do
    rs_exec "$r" ip addr add "$VIP_L4/32" dev lo || fail "VIP on $r lo"
    rs_exec "$r" sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 >/dev/null || fail "arp sysctls $r"
    sysctl -q -w "net.ipv4.conf.$(rs_if "$r").accept_local=1" >/dev/null || fail "accept_local $(rs_if "$r")"
    rs_udp_start "$r" 5353 "$VIP_L4" || fail "UDP responder on $r"
done

step "services"
write_conf ops
check "l7mark-ipvs check" "$L7MARK_IPVS" check dr.conf
run "$L7MARK_IPVS" apply dr.conf || fail "apply"
run ipvsadm -Ln
check "fwmark 120 real servers use DR (Route)" sh -c "[ \$(ipvsadm -Ln -f 120 | grep -c Route) = 3 ]"
check "fwmark 121 has one-packet scheduling (ops)" sh -c "ipvsadm -Ln -f 121 | grep -q ops"
nft -f - <<EOF || fail "nft ruleset"
table ip l7m_test {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $VIP_L4 tcp dport 80 counter meta mark set 120 comment "m120"
        ip daddr $VIP_L4 udp dport 5353 counter meta mark set 121 comment "m121"
    }
}
EOF

step "TCP over DR: rr over three real servers"
got=$(who_answers 6 "http://$VIP_L4/")
echo "answers: $got"
for r in $RS_ALL; do expect_eq "$r answered 2 of 6" "$(count_words "$r" "$got")" 2; done
check "ipvsadm -Lnc shows DR connections" sh -c "ipvsadm -Lnc | grep -E '^TCP .* $CLIENT_IP:[0-9]+ +$VIP_L4:80 +$RS1_IP:80' >/dev/null"

step "UDP with ops: one source port, every datagram scheduled on its own"
ans=$(udp_queries "$NS_CLIENT" 40000 "$VIP_L4" 5353 6)
echo "$ans"
servers=$(echo "$ans" | awk '{print $1}' | tr '\n' ' ')
expect_eq "6 answers" "$(echo "$ans" | grep -c .)" 6
for r in $RS_ALL; do expect_eq "$r answered 2 of 6 datagrams" "$(count_words "$r" "$servers")" 2; done
ipvsadm -Lnc
expect_eq "no UDP connection entry for the OPS flow (OPS connections are not hashed)" \
    "$(ipvsadm -Lnc | grep -c "^UDP .* $CLIENT_IP:40000 ")" 0

step "UDP without ops: the flow sticks to one real server"
write_conf ""
run "$L7MARK_IPVS" apply dr.conf || fail "apply without ops"
check "fwmark 121 no longer has ops" sh -c "! ipvsadm -Sn | grep -q -- '-f 121 .*-o'"
ans=$(udp_queries "$NS_CLIENT" 40001 "$VIP_L4" 5353 6)
echo "$ans"
servers=$(echo "$ans" | awk '{print $1}' | tr '\n' ' ')
expect_eq "6 answers" "$(echo "$ans" | grep -c .)" 6
expect_eq "one real server for the whole flow" "$(distinct "$servers")" 1
ipvsadm -Lnc
expect_eq "one UDP connection entry for $CLIENT_IP:40001" \
    "$(ipvsadm -Lnc | grep -c "^UDP .* $CLIENT_IP:40001 ")" 1
expect_ge "nft m121 counted the datagrams" "$(nft_counter ip l7m_test pre m121)" 12

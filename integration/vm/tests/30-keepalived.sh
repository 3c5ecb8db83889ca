#!/bin/sh
# 30-keepalived: the real keepalived (health-checker only: "keepalived --check", no VRRP -- the guest
# has no NIC) with the shipped ipvs-scripts/keepalived/keepalived.conf.example.
#  * keepalived creates the "virtual_server fwmark N" services (sh affinity, no persistence: L7
#    marks must not be persistent) in NAT mode, and adds
#    the real servers once their HTTP_GET / TCP_CHECK health checks pass ("alpha")
#  * traffic marked 110/111 reaches the right pools
#  * a real server whose httpd stops is removed within a bounded time; restarted -> re-added
#  * keepalived removes its services when it stops
# Only $DELAY_LOOP is changed (6 s -> 1 s) to keep the test short; everything else runs as shipped.
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
EXAMPLE=$L7M_REPO/ipvs-scripts/keepalived/keepalived.conf.example
CONF=/tmp/l7m-test/keepalived.conf
KA_PID=/run/l7m/keepalived.pid

step "configuration"
# shellcheck disable=SC2016  # a literal "$" (keepalived parameter)
sed 's/^\$DELAY_LOOP=.*/$DELAY_LOOP=1/' "$EXAMPLE" > "$CONF"
diff "$EXAMPLE" "$CONF"
check "the copy sets \$DELAY_LOOP=1" grep -qx '[$]DELAY_LOOP=1' "$CONF"
check "nothing else differs from the shipped example" \
    [ "$(grep -v '^[$]DELAY_LOOP=' "$EXAMPLE")" = "$(grep -v '^[$]DELAY_LOOP=' "$CONF")" ]
# shellcheck disable=SC2016
expect_eq "example addresses match the test topology" \
    "$(grep -E '^\$RS[123]=' "$EXAMPLE" | tr '\n' ' ')" "\$RS1=$RS1_IP \$RS2=$RS2_IP \$RS3=$RS3_IP "
out=$(keepalived -t -f "$CONF" 2>&1); rc=$?
echo "$out"
expect_eq "keepalived -t: config test passes" "$rc" 0
expect_eq "keepalived -t: no warnings" "$(echo "$out" | grep -c .)" 0

step "start keepalived --check"
bg_start "$KA_PID" "$L7M_ARTIFACTS/keepalived.log" \
    keepalived --check --dont-fork --log-console --log-detail --no-syslog -f "$CONF" \
    -p /run/l7m/keepalived-main.pid -c /run/l7m/keepalived-checkers.pid
both="$RS1_IP:80 $RS2_IP:80"
if wait_for 30 sh -c "[ \"\$(ipvsadm -Sn | grep -c '^-a -f 11[01] ')\" = 3 ]"; then
    ok "keepalived added all three real servers after their checks passed"
else
    fail "real servers not all added within 30 s"
fi
run ipvsadm -Ln
expect_eq "fwmark 110 real servers" "$(ipvs_dests 110)" "$both"
expect_eq "fwmark 111 real servers" "$(ipvs_dests 111)" "$RS3_IP:80"
check "fwmark 110: sh, not persistent" sh -c "ipvsadm -Sn | grep -qx -- '-A -f 110 -s sh'"
check "fwmark 111: rr, not persistent" sh -c "ipvsadm -Sn | grep -qx -- '-A -f 111 -s rr'"
check "real servers in NAT (Masq) mode" sh -c "[ \$(ipvsadm -Ln | grep -c Masq) = 3 ]"

step "traffic by mark"
nft -f - <<EOF || fail "nft ruleset"
table ip l7m_test {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $VIP_L7 tcp dport 80 ip saddr $CLIENT_IP2 counter meta mark set 111 comment "m111"
        ip daddr $VIP_L7 tcp dport 80 meta mark != 111 counter meta mark set 110 comment "m110"
    }
}
EOF
got=$(who_answers 4 "http://$VIP_L7/")
echo "client $CLIENT_IP (mark 110): $got"
expect_eq "mark 110: one client sticks to one of rs1/rs2 (sh)" "$(distinct "$got")" 1
case $got in rs1*|rs2*) ok "mark 110 served by the web pool" ;; *) fail "mark 110: $got" ;; esac
expect_eq "mark 111 -> rs3" "$(who_answers 2 "http://$VIP_L7/img/x" "$CLIENT_IP2")" "rs3 rs3"

step "rs2 httpd stops -> keepalived removes rs2"
rs_http_stop rs2 80
t0=$(_l7m_centis)
if wait_for 20 sh -c "[ \"\$(ipvsadm -Sn | grep -c '^-a -f 110 ')\" = 1 ]"; then
    ok "rs2 removed after $(( ($(_l7m_centis) - t0) / 100 ))s"
else
    fail "rs2 still in service 110 after 20 s"
fi
expect_eq "fwmark 110 real servers" "$(ipvs_dests 110)" "$RS1_IP:80"
# sh may have hashed the client to rs2: with rs2 gone the hash maps it to rs1
expect_eq "mark 110 requests now all go to rs1" "$(who_answers 3 "http://$VIP_L7/")" "rs1 rs1 rs1"

step "rs2 httpd back -> keepalived re-adds rs2"
rs_http_start rs2 80 || fail "restart rs2 httpd"
t0=$(_l7m_centis)
if wait_for 20 sh -c "[ \"\$(ipvsadm -Sn | grep -c '^-a -f 110 ')\" = 2 ]"; then
    ok "rs2 re-added after $(( ($(_l7m_centis) - t0) / 100 ))s"
else
    fail "rs2 not re-added within 20 s"
fi
expect_eq "fwmark 110 real servers" "$(ipvs_dests 110)" "$both"

step "TCP_CHECK: rs3 down -> removed, up -> re-added"
rs_http_stop rs3 80
check "rs3 removed from 111" wait_for 20 sh -c "! ipvsadm -Sn | grep -q '^-a -f 111 '"
rs_http_start rs3 80 || fail "restart rs3 httpd"
check "rs3 re-added to 111" wait_for 20 sh -c "ipvsadm -Sn | grep -q '^-a -f 111 -r $RS3_IP:80 '"

step "keepalived stops -> its services are removed"
grep -E 'Adding|Removing|Activating|TCP connection|HTTP status|failed|Error' "$L7M_ARTIFACTS/keepalived.log" | tail -20
bg_stop "$KA_PID"
check "no fwmark service left" wait_for 10 sh -c "! ipvsadm -Sn | grep -q '^-A -f'"
check "keepalived logged no error" sh -c "! grep -i -E 'error|segfault' '$L7M_ARTIFACTS/keepalived.log'"

#!/bin/sh
# 50-binder-routing: TCP delayed binding through the kernel's SYNPROXY on real IPVS NAT fwmark
# services: Host, path and SNI choose the IPVS service although IPVS binds at the SYN.
#   a.example -> 110 (rs1:80)   b.example -> 111 (rs2:80)   static.example.com/img/ -> 112 (rs3:80)
#   c.example -> 115 (rs1 + rs2, sh affinity)  d.example -> 116 (rs2 + rs1, sh affinity)
#   SNI secure.example.com -> 113 (rs3:443, openssl s_server)   *.example.com -> 114 (rs2:443)
#   SNI *.pq-example.com (2 kB post-quantum ClientHello, SNI past byte 1460) -> 117 (rs2:4443 sink)
#   anything else -> default 100 (rs1:8080)
# Every request is checked end to end by l7mark-testkit: the server echoes a hash of the request
# it received (intact), big responses are checked byte by byte.
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
need_bin l7mark
need_bin l7mark-testkit
. "$L7M_REPO/integration/vm/l7mark-lib.sh"
binder_setup default

step "Host and path choose the service"
check "a.example -> rs1" load a.example 10 1 rs1
check "b.example -> rs2" load b.example 10 1 rs2
check "static.example.com outside /img/ -> default (rs1:8080)" load static.example.com 2 1 rs1-8080
# the path rule needs /img/: http-load requests /rN, so ask curl for /img/x
body=$(client_exec curl -s --max-time 10 -H 'Host: static.example.com' "http://$VIP_L7/img/x")
expect_eq "static.example.com/img/x served by rs3" "$(echo "$body" | sed 's/ .*//')" "served-by=rs3"
check "unknown host -> default service (rs1:8080)" load zzz.example 5 1 rs1-8080
expect_eq "ipvsadm shows a connection bound to rs2:80 through fwmark 111" \
    "$(ipvsadm -Lnc | grep -c "$VIP_L7:80 *$RS2_IP:80")" 10

step "requests over several segments, a POST larger than the window, a 1 MB response"
check "6 kB request (5 segments) intact on rs2" load b.example 5 1 rs2 --pad 6000
check "60 kB POST (larger than the 29200 window) intact on rs1" load a.example 3 1 rs1 --post 60000
check "1 MB response intact (byte by byte) from rs2" load b.example 3 1 rs2 --big 1000000

step "200 sequential and 200 concurrent connections, every one on the right service"
check "200 sequential a.example -> rs1" load a.example 200 1 rs1
check "100 concurrent a.example -> rs1" load a.example 100 20 rs1
( load b.example 100 20 rs2 > conc-b.txt 2>&1; echo "rc=$?" >> conc-b.txt ) &
bpid=$!
load a.example 100 20 rs1 > conc-a.txt 2>&1; echo "rc=$?" >> conc-a.txt
wait $bpid
cat conc-a.txt conc-b.txt
expect_eq "concurrent a.example: all on rs1" "$(tail -1 conc-a.txt)" "rc=0"
expect_eq "concurrent b.example: all on rs2" "$(tail -1 conc-b.txt)" "rc=0"

step "setup cost against plain IPVS in the same guest (L4 VIP $VIP_L4:80 -> rs3:8080, no l7mark)"
nft -f - <<EOF || fail "L4 mark table"
table ip l4base {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip daddr $VIP_L4 tcp dport 80 meta mark set 190
    }
}
EOF
ipvsadm -A -f 190 -s rr && ipvsadm -a -f 190 -r "$RS3_IP:8080" -m || fail "L4 service"
for round in 1 2 3; do
    l7=$(load a.example 100 1 rs1 | sed -n 's/.*\(p50=[^ ]*\) \(p99=[^ ]*\).*/\1 \2/p')
    l4=$(client_exec l7mark-testkit http-load --to "$VIP_L4:80" --host a.example --n 100 --expect rs3-8080 \
        | sed -n 's/.*\(p50=[^ ]*\) \(p99=[^ ]*\).*/\1 \2/p')
    echo "SETUP-COST round $round: l7mark delayed binding $l7 | plain IPVS $l4 (connect+request+response, sequential)"
done
check "plain IPVS baseline answered" client_exec l7mark-testkit http-load --to "$VIP_L4:80" --host x --n 1 --expect rs3-8080

step "affinity per class (source-hash scheduler, no persistence): c.example and d.example stick"
c_out=$(load c.example 8 1 "")
d_out=$(load d.example 8 1 "")
echo "$c_out"; echo "$d_out"
c_srv=$(echo "$c_out" | sed -n 's/.*servers=\([^ ]*\).*/\1/p')
d_srv=$(echo "$d_out" | sed -n 's/.*servers=\([^ ]*\).*/\1/p')
case $c_srv in rs[12]:8) ok "c.example: all 8 on one server ($c_srv)" ;; *) fail "c.example spread: $c_srv" ;; esac
case $d_srv in rs[12]:8) ok "d.example: all 8 on one server ($d_srv)" ;; *) fail "d.example spread: $d_srv" ;; esac
[ "${c_srv%%:*}" != "${d_srv%%:*}" ] && ok "the two classes landed on different real servers" \
    || fail "c and d on the same real server: $c_srv / $d_srv"
check "no persistence template on an L7 mark" sh -c "! ipvsadm -Lnc | grep -q '^IP .* 0.0.0.11[0-9]:0'"

step "TLS: the ClientHello's SNI chooses the service (openssl s_server on the real servers)"
expect_eq "SNI secure.example.com -> rs3" "$(tls_get secure.example.com)" rs3
expect_eq "SNI www.example.com -> rs2" "$(tls_get www.example.com)" rs2
printf 'GET /index.html HTTP/1.0\r\n\r\n' | client_exec timeout 10 openssl s_client -connect "$VIP_L7:443" \
    -servername secure.example.com -quiet > sclient.txt 2>&1
expect_eq "openssl s_client through the binder, SNI secure.example.com -> rs3" "$(tail -1 sclient.txt)" rs3
check "2 kB post-quantum ClientHello (SNI after byte 1460) -> rs2 sink, intact" \
    client_exec l7mark-testkit raw-send --to "$VIP_L7:443" --file "$L7M_REPO/tests/fixtures/tls_chrome_pq.bin" --expect rs2-sink
check "the same split into two TLS records -> rs2 sink, intact" \
    client_exec l7mark-testkit raw-send --to "$VIP_L7:443" --file "$L7M_REPO/tests/fixtures/tls_chrome_pq_two_records.bin" --expect rs2-sink

step "l7mark's counters"
curl -s --max-time 3 http://127.0.0.1:9180/metrics > metrics.txt
grep -E '^l7mark_(binder_(bound|classified|defaulted|setup|held|hold)|rule_hits)' metrics.txt
expect_ge "binder bound connections" "$(l7mark_metric_wait l7mark_binder_bound_total 800)" 800
expect_ge "rule a hits" "$(l7mark_metric 'l7mark_rule_hits_total{rule="a"}')" 400
expect_eq "no held SYN left" "$(l7mark_metric l7mark_binder_held_syns)" 0
l7mark_stop
check "l7mark logged no error" sh -c "! grep -E 'ERROR' $L7M_RUN/l7mark.log"

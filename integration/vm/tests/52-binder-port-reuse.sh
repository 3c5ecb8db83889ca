#!/bin/sh
# 52-binder-port-reuse: a client that reuses its source port must land on its NEW class's service.
# IPVS finds a connection by its 5-tuple: a reused client port meets the previous connection's entry
# (TIME_WAIT, 2 min). A persistent entry is "controlled" and never rescheduled (ip_vs_core.c
# is_new_conn_expected), so l7mark's L7 marks are non-persistent (affinity from the sh scheduler),
# and IPVS reschedules the entry on the new SYN (conn_reuse_mode=1). When the old conntrack entry
# still exists IPVS drops that SYN (ip_vs_conn_uses_old_conntrack); the binder re-triggers SYNPROXY
# on the client's retransmission, so no request may take more than 1 s.
#  * one source port (curl --local-port) alternating a.example / b.example 20 times;
#  * 300 requests over 10 source ports, classes a (rs1), b (rs2) and c (sh over rs1+rs2);
#  * 2,000 connections from one client address with ip_local_port_range narrowed to 200 ports.
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
need_bin l7mark
need_bin l7mark-testkit
. "$L7M_REPO/integration/vm/l7mark-lib.sh"
binder_setup default

# one request with curl from PORT: prints "<served-by> <seconds>"
curl_from() { # PORT HOST
    _out=$(client_exec curl -s --max-time 10 --local-port "$1" -H "Host: $2" "http://$VIP_L7/p$1" \
        -w 'T=%{time_total}\n')
    echo "$(echo "$_out" | sed -n 's/^served-by=\([^ ]*\).*/\1/p') $(echo "$_out" | sed -n 's/^T=//p')"
}
# alternate PORT N: N requests from PORT, a.example (rs1) and b.example (rs2) in turn; prints
# "<host> <expected> <got> <seconds>" lines
alternate() {
    _i=0
    while [ $_i -lt "$2" ]; do
        if [ $((_i % 2)) = 0 ]; then _h=a.example; _e=rs1; else _h=b.example; _e=rs2; fi
        echo "$_h $_e $(curl_from "$1" $_h)"
        _i=$((_i + 1))
    done
}
# judge lines "<host> <expected> <got> <seconds>" on stdin: prints "misrouted slow total"
judge() {
    awk '{n++; if ($2 != $3) {bad++; print "MISROUTED", $0 > "/dev/stderr"}
          if ($4 + 0 > 1.0 || $4 == "") {slow++; print "SLOW", $0 > "/dev/stderr"}}
         END {printf "%d %d %d\n", bad, slow, n}'
}

step "one source port (curl --local-port 41000) alternating classes 20 times"
c_srv=$(load c.example 1 1 "" | sed -n 's/.*servers=\([^:]*\):.*/\1/p')
echo "c.example sticks to $c_srv (sh)"
alternate 41000 20 > alt.txt
cat alt.txt
set -- $(judge < alt.txt)
expect_eq "alternating classes on one port: misrouted" "$1" 0
expect_eq "alternating classes on one port: requests over 1 s" "$2" 0
expect_eq "alternating classes on one port: answered" "$3" 20

step "300 requests over 10 source ports, classes a, b and c (sh affinity)"
: > ports.txt
r=0
while [ $r -lt 30 ]; do
    p=42000
    while [ $p -lt 42010 ]; do
        case $(((r + p) % 3)) in 0) h=a.example; e=rs1 ;; 1) h=b.example; e=rs2 ;; *) h=c.example; e=$c_srv ;; esac
        echo "$h $e $(curl_from $p $h)" >> ports.txt
        p=$((p + 1))
    done
    r=$((r + 1))
done
set -- $(judge < ports.txt)
expect_eq "10 ports x 30: misrouted" "$1" 0
expect_eq "10 ports x 30: requests over 1 s" "$2" 0
expect_eq "10 ports x 30: answered" "$3" 300

step "2,000 connections from one address through 200 source ports"
client_exec sysctl -q -w net.ipv4.ip_local_port_range="50000 50199"
( load a.example 1000 4 rs1 --timeout-ms 10000 > narrow-a.txt 2>&1; echo "rc=$?" >> narrow-a.txt ) &
bpid=$!
load b.example 1000 4 rs2 --timeout-ms 10000 > narrow-b.txt 2>&1; echo "rc=$?" >> narrow-b.txt
wait $bpid
cat narrow-a.txt narrow-b.txt
expect_eq "1,000 a.example through 200 ports: all on rs1" "$(tail -1 narrow-a.txt)" "rc=0"
expect_eq "1,000 b.example through the same ports: all on rs2" "$(tail -1 narrow-b.txt)" "rc=0"
client_exec sysctl -q -w net.ipv4.ip_local_port_range="32768 60999"

step "why L7 marks are never persistent: the same reuse on persistent services misroutes"
ipvsadm -E -f 110 -s rr -p 300 && ipvsadm -E -f 111 -s rr -p 300 || fail "make 110/111 persistent"
alternate 43000 6 > pers.txt
cat pers.txt
set -- $(judge < pers.txt 2>/dev/null)
expect_ge "persistent services: reused port lands on the old class's server (kernel behaviour)" "$1" 1
code=$(curl -s -o healthz.json -w '%{http_code}' --max-time 3 http://127.0.0.1:9180/healthz)
expect_eq "/healthz fails on persistent L7 marks" "$code" 503
check "/healthz names mark 110's persistence" grep -q 'mark 110: the fwmark service is persistent' healthz.json
l7mark check --config l7mark.toml > check-pers.txt 2>&1; rc=$?
cat check-pers.txt
check "l7mark check refuses persistent L7 marks (exit $rc)" sh -c "[ $rc -ne 0 ] && grep -q 'mark 111: the fwmark service is persistent' check-pers.txt"
ipvsadm -E -f 110 -s rr && ipvsadm -E -f 111 -s rr || fail "110/111 back to non-persistent"

step "l7mark's counters"
curl -s --max-time 3 http://127.0.0.1:9180/metrics | grep -E '^l7mark_binder_(port_reuse|retrigger|resent_syn|bound|hold_timeouts|release_timeout)' || true
l7mark_stop

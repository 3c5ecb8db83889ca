#!/bin/sh
# 12-ipvs-scripts: ipvs-scripts/l7mark-ipvs beyond the happy path (busybox sh + awk, real ipvsadm):
#  * check lists every problem of a bad file, with its line number, and fails
#  * apply: weight/forwarding changes use -e, dropped real servers -d, dry run (-n) changes nothing,
#    --prune removes in-range services the file does not list and leaves others (keepalived's 1000+)
#  * IPv6 addresses are compared in canonical form (no spurious re-adds)
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"

step "check: a file with one problem per line"
cat > bad.conf <<EOF
real 10.0.2.2:80
service 50 tcp nat rr
service 110 tcpx nat rr
service 111 tcp nat rr persist
service 112 tcp nat foo
service 113 tcp nat rr ops
service 114 udp nat rr ops
service 116 tcp nat rr
    real 10.0.2.2
    real 10.0.2.300:80
    real [fd00::1]:80
    real 10.0.3.2:80 weight 70000
    real 10.0.4.2:99999
    real 10.0.2.2:80
    real 10.0.2.2:80
service 117 tcp nat rr
    real 10.0.2.2:80
service 118 tcp nat rr flurb
bogus
service 119 tcp nat wlc persist 300
    real 10.0.2.9:80
EOF
out=$("$L7MARK_IPVS" check bad.conf 2>&1); rc=$?
echo "$out"
expect_eq "check fails on the bad file" "$rc" 1
for want in \
    "bad.conf:1: error: real before any service" \
    "bad.conf:2: error: mark 50 is outside the l7mark mark range 100-999" \
    "bad.conf:3: error: protocol \"tcpx\"" \
    "bad.conf:4: error: persist needs a timeout" \
    "bad.conf:5: error: unknown scheduler \"foo\"" \
    "bad.conf:6: error: ops (one-packet scheduling) only applies to UDP" \
    "bad.conf:7: error: udp nat ops: IPVS never hashes one-packet-scheduled connections" \
    "bad.conf:9: error: real 10.0.2.2: nat needs a port" \
    "bad.conf:10: error: bad real server address \"10.0.2.300:80\"" \
    "bad.conf:11: error: real server [fd00::1]:80 is IPv6 but service 116 is IPv4" \
    "bad.conf:12: error: weight needs an integer 0..65535" \
    "bad.conf:13: error: bad port \"99999\"" \
    "bad.conf:15: error: real 10.0.2.2:80 is listed twice in service 116" \
    "bad.conf:17: error: real 10.0.2.2:80 is also a NAT real server of service 116" \
    "bad.conf:18: error: unknown service option \"flurb\"" \
    "bad.conf:19: error: unknown directive \"bogus\"" \
    "bad.conf:20: error: persist on tcp service 119 (an l7mark mark)" \
    "bad.conf: 17 error(s)"; do
    case $out in *"$want"*) ok "reports: $want" ;; *) fail "missing: $want" ;; esac
done
expect_eq "apply refuses the bad file" "$("$L7MARK_IPVS" apply bad.conf >/dev/null 2>&1; echo $?)" 1
expect_eq "nothing was created" "$(ipvsadm -Sn | grep -c .)" 0
printf 'service 1200 tcp nat rr\n    real 10.0.2.2:80\n' > range.conf
expect_eq "L7MARK_MARK_RANGE=1000-1999 accepts mark 1200" \
    "$(L7MARK_MARK_RANGE=1000-1999 "$L7MARK_IPVS" check range.conf >/dev/null 2>&1; echo $?)" 0
printf 'service 131 tcp nat rr persist 60\n    real 10.0.2.2:80\n' > l7persist.conf
expect_eq "L7MARK_IPVS_ALLOW_L7_PERSIST=1 turns persist on a tcp mark into a warning" \
    "$(L7MARK_IPVS_ALLOW_L7_PERSIST=1 "$L7MARK_IPVS" check l7persist.conf >/dev/null 2>&1; echo $?)" 0
printf 'service 130 udp nat rr ops\n    real 10.0.2.2:53\n' > natops.conf
expect_eq "L7MARK_IPVS_ALLOW_NAT_OPS=1 turns udp nat ops into a warning" \
    "$(L7MARK_IPVS_ALLOW_NAT_OPS=1 "$L7MARK_IPVS" check natops.conf >/dev/null 2>&1; echo $?)" 0

check "the shipped services.conf.example passes check" "$L7MARK_IPVS" check "$L7M_REPO/ipvs-scripts/services.conf.example"

step "apply: changes, dry run, prune"
cat > a.conf <<EOF
service 110 tcp nat wrr weight 2
    real $RS1_IP:80
    real $RS2_IP:80 weight 5
service 110 tcp nat rr ipv6
    real [FD00:2:0:0::2]:80
EOF
run "$L7MARK_IPVS" apply a.conf || fail "apply a.conf"
expect_eq "weights as written" "$(ipvsadm -Sn | grep '^-a -f 110 -r' | awk '{print $5, $NF}' | tr '\n' ' ')" \
    "$RS1_IP:80 2 $RS2_IP:80 5 "
out=$("$L7MARK_IPVS" apply a.conf); echo "$out"
case $out in *"nothing to do"*) ok "non-canonical IPv6 address matches the kernel's form (idempotent)" ;;
    *) fail "second apply: $out" ;; esac
ipvsadm -A -f 150 -s rr; ipvsadm -A -f 2000 -s rr      # strays: one in l7mark's range, one keepalived-style
cat > b.conf <<EOF
service 110 tcp nat wrr
    real $RS1_IP:80 weight 3
    real $RS3_IP:80
service 110 tcp nat rr ipv6
    real [$RS1_IP6]:80
EOF
before=$(ipvsadm -Sn)
out=$("$L7MARK_IPVS" -n apply --prune b.conf); echo "$out"
check "dry run changed nothing" [ "$(ipvsadm -Sn)" = "$before" ]
for want in "-e -f 110 -r $RS1_IP:80 -m -w 3" "-d -f 110 -r $RS2_IP:80" "-a -f 110 -r $RS3_IP:80 -m -w 1" "-D -f 150"; do
    case $out in *"ipvsadm $want"*) ok "plan: $want" ;; *) fail "plan lacks: $want" ;; esac
done
case $out in *"-D -f 2000"*) fail "prune touched mark 2000 (outside the range)" ;; *) ok "prune leaves mark 2000 alone" ;; esac
run "$L7MARK_IPVS" apply --prune b.conf || fail "apply --prune b.conf"
expect_eq "fwmark 110 real servers after the change" "$(ipvs_dests 110)" "$RS1_IP:80 $RS3_IP:80"
expect_eq "rs1 weight 3" "$(ipvsadm -Sn | awk -v r="$RS1_IP:80" '$1 == "-a" && $5 == r {print $NF}')" 3
expect_eq "services left: 110, 110 ipv6, 2000" "$(ipvsadm -Sn | grep '^-A' | awk '{print $3 ($4 == "-6" ? "v6" : "")}' | sort | tr '\n' ' ')" "110 110v6 2000 "

step "forwarding method change nat -> dr uses -e"
printf 'service 110 tcp dr wrr\n    real %s:80 weight 3\n    real %s:80\n' "$RS1_IP" "$RS3_IP" > c.conf
out=$("$L7MARK_IPVS" apply c.conf 2>&1) || fail "apply c.conf"
echo "$out"
case $out in *"ipvsadm -e -f 110 -r $RS1_IP:80 -g -w 3"*) ok "plan: -e ... -g" ;; *) fail "no -e -g in: $out" ;; esac
case $out in *"warning: real $RS1_IP:80: the port is ignored in dr mode"*) ok "warns: port ignored in dr mode" ;;
    *) fail "no dr port warning" ;; esac
expect_eq "both real servers now in DR (Route) mode" "$(ipvsadm -Ln -f 110 | grep -c 'Route')" 2
run "$L7MARK_IPVS" remove a.conf || fail "remove"
expect_eq "only mark 2000 left" "$(ipvsadm -Sn | grep '^-A')" "-A -f 2000 -s rr"

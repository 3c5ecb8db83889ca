#!/bin/sh
# 30-l7mark-binder: TCP delayed binding with the kernel's SYNPROXY on the host kernel. No IPVS here:
# nf_nat DNAT by the released server SYN's mark, at the output hook where IPVS's ip_vs_in_hook
# would schedule it, stands in (110 -> rs1, 111 -> rs2, default 100 -> rs3). The real thing runs
# in the VM (integration/vm/tests/50-binder-routing.sh); this lab is the fast loop and the place
# the setup cost is measured on this kernel.
. "$L7M_REPO/integration/netns/lib.sh"
. "$L7M_REPO/integration/netns/l7mark-lib.sh"

load() { # HOST N C EXPECT [ARGS...]
    _h=$1; _n=$2; _c=$3; _e=$4; shift 4
    client_exec "$TESTKIT" http-load --to "$VIP_L7:80" --host "$_h" --n "$_n" --concurrency "$_c" \
        ${_e:+--expect "$_e"} "$@"
}

step "real servers, binder ruleset (iptables-nft queues, DNAT-by-mark stand-in), l7mark"
lab_binder_servers
lab_binder_rules
cat > "$LAB_DIR/rules.json" <<EOF
{ "default_mark": 100,
  "rules": [ {"id": "a", "host": "a.example", "mark": 110},
             {"id": "b", "host": "b.example", "mark": 111} ] }
EOF
lab_config "[[service]]
name = \"web\"
vip = \"$VIP_L7\"
port = 80
proto = \"http\"" > "$LAB_DIR/l7mark.toml"
lab_l7mark_start "$LAB_DIR/l7mark.toml" || fatal "l7mark did not start"

step "Host chooses the backend; payloads intact"
check "a.example -> rs1" load a.example 20 1 rs1
check "b.example -> rs2" load b.example 20 1 rs2
check "other -> default (rs3)" load other.example 5 1 rs3
check "6 kB request over several segments" load b.example 5 1 rs2 --pad 6000
check "60 kB POST, larger than the window" load a.example 3 1 rs1 --post 60000
check "1 MB response, byte by byte" load b.example 3 1 rs2 --big 1000000
check "idle 5 s before the request (hold 3 s, policy drop)" load a.example 1 1 rs1 --idle-ms 5000

step "a client reusing its source port right away (the old connection still in conntrack)"
out=$(i=0; while [ $i -lt 5 ]; do load a.example 1 1 rs1 --sport 45000 --timeout-ms 5000; i=$((i + 1)); done)
echo "$out"
expect_eq "5 connections from port 45000, all on rs1" "$(echo "$out" | grep -c 'ok=1 errors=0 wrong=0')" 5
slow=$(echo "$out" | sed -n 's/.*max=\([0-9]*\)\..*/\1/p' | awk '$1 >= 1000' | wc -l)
expect_eq "none stalled (each under 1 s; a dropped cookie ACK cost 3 s before)" "$slow" 0

step "200 sequential and 200 concurrent"
out=$(load a.example 200 1 rs1); echo "$out"
check "200 sequential, all on rs1" sh -c "echo '$out' | grep -q 'ok=200 errors=0 wrong=0'"
echo "SETUP-COST netns sequential: $(echo "$out" | sed -n 's/.*\(p50=[^ ]*\) \(p99=[^ ]*\).*/\1 \2/p')"
direct=$(client_exec "$TESTKIT" http-load --to "$RS1_IP:80" --host a.example --n 200 --expect rs1)
echo "SETUP-COST netns direct to rs1 (routed through the director, no l7mark): $(echo "$direct" | sed -n 's/.*\(p50=[^ ]*\) \(p99=[^ ]*\).*/\1 \2/p')"
out=$(load b.example 200 20 rs2); echo "$out"
check "200 concurrent (20 at a time), all on rs2" sh -c "echo '$out' | grep -q 'ok=200 errors=0 wrong=0'"

step "counters"
expect_ge "bound connections" "$(lab_metric_wait l7mark_binder_bound_total 450)" 450
expect_eq "nothing held at rest" "$(lab_metric l7mark_binder_held_bytes)" 0
expect_ge "hold timeouts (the idle client)" "$(lab_metric_wait l7mark_binder_hold_timeouts_total 1)" 1

step "kill -9: bypass lands on the default backend; restart classifies again"
lab_l7mark_kill || fail "queues still bound"
check "a.example without the daemon -> default (rs3)" load a.example 5 1 rs3
lab_l7mark_start "$LAB_DIR/l7mark.toml" || fatal "restart"
check "after the restart a.example -> rs1" load a.example 5 1 rs1
lab_l7mark_stop

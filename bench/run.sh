#!/bin/bash
# bench/run.sh -- l7mark against plain forwarding and HAProxy, measured side by side in one run
# (issue #8). Writes docs/performance.md. Root only (network namespaces "l7b-*", removed at exit).
#
#   bench/run.sh                 RUNS=5 N_CONN=2000 N_SEQ=500 UDP_SECS=2 UDP_CLIENTS=2 by default
#   KEEP=1 OUT=/tmp/p.md bench/run.sh   leave the namespaces up afterwards (debugging)
#
# Every figure: the peers alternate run by run (the order flips every run), median [min..max]
# of RUNS runs. The host kernel has no IPVS: nf_nat DNAT by the released server SYN's mark at the
# output hook (where IPVS's ip_vs_in_hook acts on LOCAL_OUT) stands in for IPVS, and the queues
# are installed with iptables-nft NFQUEUE (no nft "queue" here) -- the netns lab's setup
# (integration/netns/l7mark-lib.sh). Not part of CI.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
RUNS=${RUNS:-5}
N_CONN=${N_CONN:-2000}
CONC=${CONC:-8}
N_SEQ=${N_SEQ:-500}
UDP_SECS=${UDP_SECS:-2}
UDP_CLIENTS=${UDP_CLIENTS:-2}
UDP_WINDOW=${UDP_WINDOW:-32}
BIG=${BIG:-100000000}
OUT=${OUT:-$REPO/docs/performance.md}
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: needs root (network namespaces)" >&2; exit 1; }
T_START=$(date +%s)

echo "== build (cargo build --release)"
(cd "$REPO" && cargo build --release) || exit 1
L7MARK=$CARGO_TARGET_DIR/release/l7mark   # read by integration/netns/l7mark-lib.sh
TESTKIT=$CARGO_TARGET_DIR/release/l7mark-testkit
need=""
command -v haproxy >/dev/null || need="$need haproxy"
command -v curl >/dev/null || need="$need curl"
command -v iptables-nft >/dev/null || need="$need iptables"
command -v nft >/dev/null || need="$need nftables"
[ -x /bin/busybox ] || need="$need busybox"
if [ -n "$need" ]; then
    echo "== apt-get install$need"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null || exit 1
fi

# ---- topology: integration/lib/topology.sh with our own prefix ---------------------------------
# shellcheck disable=SC2034  # read by the sourced libraries
L7M_REPO=$REPO
L7M_PFX=l7b-
L7M_DIR_NS=l7b-dir
L7M_IP=$(command -v ip)
L7M_RUN=/run/l7b-bench
L7M_TLS_DIR=$L7M_RUN/tls
L7M_BUSYBOX=/bin/busybox
L7M_TOPO_KILL=1
# shellcheck source=../integration/lib/common.sh
. "$REPO/integration/lib/common.sh"
# shellcheck source=../integration/lib/topology.sh
. "$REPO/integration/lib/topology.sh"
dir_nft() { dir_exec nft "$@"; }
# shellcheck source=../integration/netns/l7mark-lib.sh
. "$REPO/integration/netns/l7mark-lib.sh"
W=$L7M_RUN/w
cleanup() {
    [ -f "$L7M_RUN/hold.pid" ] && bg_stop "$L7M_RUN/hold.pid"
    topo_down
    rm -rf "$L7M_RUN"
}
if [ -n "${KEEP:-}" ]; then trap - EXIT; else trap cleanup EXIT; fi   # KEEP=1: leave the namespaces up
trap 'exit 130' INT TERM
topo_down
rm -rf "$L7M_RUN"; mkdir -p "$L7M_RUN" "$W" "$LAB_DIR"
echo "== network namespaces ${L7M_PFX}*"
topo_up || { echo "topo_up failed" >&2; exit 1; }
client_exec sysctl -q -w net.ipv4.ip_local_port_range="1024 65000"

# ---- helpers -----------------------------------------------------------------------------------
# stats FILE: "median [min..max]" of the numbers in FILE (one per line)
stats() { sort -g "$1" | awk '{a[NR]=$1} END {if (!NR) {print "-"; exit}
    m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%s [%s..%s]\n", f(m), f(a[1]), f(a[NR])}
    function f(x) { return (x >= 100 || x == int(x)) ? sprintf("%.0f", x) : sprintf("%.3g", x) }'; }
med() { sort -g "$1" | awk '{a[NR]=$1} END {if (!NR) {print 0; exit} print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }     # LOAD/FLOOD line -> value of KEY=
calc() { awk "BEGIN {printf \"%.${2:-2}f\", $1}"; }
delta() { awk "BEGIN {printf \"%+.${2:-0}f\", $1}"; }   # signed difference
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
verdict() { if [ "$(awk "BEGIN {print ($1) ? 1 : 0}")" = 1 ]; then echo "**met**"; else echo "**missed**"; fi; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$LAB_PID")/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$LAB_PID")/stat"; }
metric() { _v=$(lab_metric "$1"); echo "${_v:-0}"; }
order() { # RUN PEER...: the peers, rotated by the run number (alternating order)
    _r=$1; shift; _n=$#; _a=("$@" "$@"); echo "${_a[@]:$(( _r % _n )):$_n}"
}

# ---- real servers, director rules, HAProxy, l7mark ---------------------------------------------
echo "== servers, rules (binder ruleset with the DNAT-by-mark IPVS stand-in), HAProxy, l7mark"
lab_binder_servers
lab_binder_rules
ipt="dir_exec iptables-nft -w"
for p in 3130 3131; do
    $ipt -t mangle -A PREROUTING -d "$VIP_L7" -p udp --dport $p -j MARK --set-mark 100
done
$ipt -t mangle -A PREROUTING -d "$VIP_L7" -p udp --dport 3130 -j NFQUEUE --queue-num 100 --queue-bypass
for p in 3130 3131; do
    bg_start "$L7M_RUN/icp$p.pid" "$L7M_RUN/icp$p.log" "$L7M_IP" netns exec "$L7M_DIR_NS" \
        "$TESTKIT" icp-echo --listen "$VIP_L7:$p"
done

# 100 Host rules: h1..h100.example, marks 110/111 alternating (rs1/rs2 through the stand-in),
# everything else the default mark 100 (rs3). HAProxy gets the same 100 rules as ACLs.
{
    echo '{ "default_mark": 100, "rules": ['
    echo '  {"id": "icp", "icp": true, "url_hash": {"marks": [110, 111, 100], "members": ["c1", "c2", "c3"]}},'
    i=1; while [ $i -le 100 ]; do
        sep=,; [ $i = 100 ] && sep=
        echo "  {\"id\": \"h$i\", \"host\": \"h$i.example\", \"mark\": $((110 + i % 2))}$sep"
        i=$((i + 1))
    done
    echo '] }'
} > "$LAB_DIR/rules.json"
cp "$LAB_DIR/rules.json" "$W/rules100.json"
{
    cat <<EOF
global
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind $VIP_L4:80
EOF
    i=1; while [ $i -le 100 ]; do
        echo "    acl h$i hdr(host) -i h$i.example"
        echo "    use_backend rs$((1 + i % 2)) if h$i"
        i=$((i + 1))
    done
    echo "    default_backend rs3"
    for r in 1 2 3; do
        printf 'backend rs%s\n    server s%s %s:80\n' "$r" "$r" "$(rs_ip "rs$r")"
    done
} > "$W/haproxy.cfg"
haproxy -c -q -f "$W/haproxy.cfg" || exit 1
bg_start "$L7M_RUN/haproxy.pid" "$L7M_RUN/haproxy.log" "$L7M_IP" netns exec "$L7M_DIR_NS" haproxy -db -f "$W/haproxy.cfg"

cat > "$LAB_DIR/l7mark.toml" <<EOF
rules_file = "$LAB_DIR/rules.json"
[marks]
min = 100
max = 999
[[service]]
name = "web"
vip = "$VIP_L7"
port = 80
proto = "http"
[[service]]
name = "icp"
vip = "$VIP_L7"
port = 3130
proto = "icp"
forwarding = "dr"
[queues]
base = 100
workers = 1
[api]
listen = "127.0.0.1:9180"
max_body_bytes = 67108864
[nft]
manage = false
[binder]
# no IPVS on the host kernel: nf_nat DNAT-by-mark stands in (integration/netns/l7mark-lib.sh)
require_ipvs = false
hold_timeout_ms = 3000
on_hold_timeout = "drop"
EOF
lab_l7mark_start "$LAB_DIR/l7mark.toml" || { echo "l7mark did not start" >&2; exit 1; }
sleep 1
RSS_IDLE=$(rss_kb)
echo "l7mark pid $(cat "$LAB_PID"), idle RSS ${RSS_IDLE} kB (100 Host rules + 1 ICP rule)"

# smoke: each path answers from the expected server
HOST=h97.example   # mark 111 -> rs2; HAProxy walks 97 ACLs (near its worst case)
client_exec "$TESTKIT" http-load --to "$RS2_IP:80" --host $HOST --n 5 --expect rs2 >/dev/null || { echo "direct path broken" >&2; exit 1; }
client_exec "$TESTKIT" http-load --to "$VIP_L7:80" --host $HOST --n 5 --expect rs2 >/dev/null || { echo "l7mark path broken" >&2; exit 1; }
wait_for 10 sh -c "$L7M_IP netns exec $L7M_DIR_NS ss -ltn | grep -q '$VIP_L4:80'" || { cat "$L7M_RUN/haproxy.log"; exit 1; }
client_exec "$TESTKIT" http-load --to "$VIP_L4:80" --host $HOST --n 5 --expect rs2 --lenient || { echo "HAProxy path broken" >&2; cat "$L7M_RUN/haproxy.log"; exit 1; }

# ---- 1. UDP / ICP -------------------------------------------------------------------------------
echo "== UDP/ICP: $RUNS runs x {direct, l7mark}, $UDP_CLIENTS clients x window $UDP_WINDOW, ${UDP_SECS}s; then ping-pong"
D0_Q=$(metric l7mark_nfqueue_queue_dropped_total); D0_U=$(metric l7mark_nfqueue_user_dropped_total)
D0_N=$(metric l7mark_nfqueue_undelivered_estimate); D0_O=$(metric l7mark_queue_overflows_total)
udp_tp() { # PORT -> total replies/s over the clients; appends l7mark CPU seconds to $W/udp_cpu
    _c0=$(cpu_ticks)
    _pids=""
    _k=1; while [ $_k -le "$UDP_CLIENTS" ]; do
        client_exec "$TESTKIT" icp-flood --to "$VIP_L7:$1" --secs "$UDP_SECS" --window "$UDP_WINDOW" > "$W/flood$_k" &
        _pids="$_pids $!"
        _k=$((_k + 1))
    done
    # shellcheck disable=SC2086
    wait $_pids
    _c1=$(cpu_ticks)
    cat "$W"/flood* | field rate | awk '{s += $1} END {print s}'
    cat "$W"/flood* | field lost | awk '{s += $1} END {print s}' >> "$W/udp_lost_$1"
    echo $(( _c1 - _c0 )) >> "$W/udp_ticks_$1"
    rm -f "$W"/flood*
}
r=0
while [ $r -lt "$RUNS" ]; do
    for peer in $(order $r direct l7mark); do
        port=3131; [ "$peer" = l7mark ] && port=3130
        udp_tp $port >> "$W/udp_rate_$peer"
        o=$(client_exec "$TESTKIT" icp-flood --to "$VIP_L7:$port" --secs 1 --window 1)
        echo "$o" | field p50 >> "$W/udp_p50_$peer"; echo "$o" | field p99 >> "$W/udp_p99_$peer"
    done
    r=$((r + 1))
done
TICK=$(getconf CLK_TCK)
# l7mark's CPU per run (its thread does the verdict and the rest of the receive path after it)
UDP_CPU=$(awk -v t="$TICK" -v s="$UDP_SECS" '{c += $1} END {printf "%.0f", 100 * c / t / NR / s}' "$W/udp_ticks_3130")
# classified datagrams per second per core of l7mark = median rate / (CPU fraction)
UDP_PER_CORE=$(awk -v m="$(med "$W/udp_rate_l7mark")" -v c="$UDP_CPU" 'BEGIN {if (c > 0) printf "%.0f", m / (c / 100); else print 0}')
UDP_Q=$(( $(metric l7mark_nfqueue_queue_dropped_total) - D0_Q ))
UDP_U=$(( $(metric l7mark_nfqueue_user_dropped_total) - D0_U ))
UDP_N=$(( $(metric l7mark_nfqueue_undelivered_estimate) - D0_N ))
UDP_O=$(( $(metric l7mark_queue_overflows_total) - D0_O ))
UDP_LOST=$(awk '{s += $1} END {print s + 0}' "$W/udp_lost_3130")
UDP_LOST_D=$(awk '{s += $1} END {print s + 0}' "$W/udp_lost_3131")
UDP_ADD50=$(delta "$(med "$W/udp_p50_l7mark") - $(med "$W/udp_p50_direct")" 1)
UDP_ADD99=$(delta "$(med "$W/udp_p99_l7mark") - $(med "$W/udp_p99_direct")" 1)
echo "UDP rate direct $(stats "$W/udp_rate_direct")  l7mark $(stats "$W/udp_rate_l7mark")  l7mark CPU ${UDP_CPU}%  drops q=$UDP_Q u=$UDP_U"

# ---- 2. TCP -------------------------------------------------------------------------------------
echo "== TCP: $RUNS runs x {direct, l7mark, haproxy}: $N_CONN conns (c=$CONC), $N_SEQ sequential, 1 x $BIG B"
tcp_to() { case $1 in direct) echo "$RS2_IP:80" ;; l7mark) echo "$VIP_L7:80" ;; haproxy) echo "$VIP_L4:80" ;; esac; }
TCP_ERR=0
r=0
while [ $r -lt "$RUNS" ]; do
    for peer in $(order $r direct l7mark haproxy); do
        to=$(tcp_to $peer)
        # HAProxy rewrites the request head (drops "Connection: close"): no byte-exact echo check
        len=""; [ $peer = haproxy ] && len=--lenient
        o=$(client_exec "$TESTKIT" http-load --to "$to" --host $HOST --n "$N_CONN" --concurrency "$CONC" --expect rs2 $len) || { TCP_ERR=$((TCP_ERR + 1)); echo "$o" | head -3; }
        echo "$o" | head -1 | field rate >> "$W/tcp_rate_$peer"
        echo "$o" | head -1 | field errors >> "$W/tcp_err_$peer"
        echo "$o" | head -1 | field mean | awk -v c="$CONC" '{if ($1 > 0) printf "%.0f\n", c / ($1 / 1000)}' >> "$W/tcp_crate_$peer"
        echo "$o" | head -1 | field p50 >> "$W/tcp_cp50_$peer"; echo "$o" | head -1 | field p99 >> "$W/tcp_cp99_$peer"
        o=$(client_exec "$TESTKIT" http-load --to "$to" --host $HOST --n "$N_SEQ" --concurrency 1 --expect rs2 $len) || { TCP_ERR=$((TCP_ERR + 1)); echo "$o" | head -3; }
        echo "$o" | head -1 | field p50 | awk '{print $1 * 1000}' >> "$W/tcp_p50_$peer"
        echo "$o" | head -1 | field p99 | awk '{print $1 * 1000}' >> "$W/tcp_p99_$peer"
        o=$(client_exec "$TESTKIT" http-load --to "$to" --host $HOST --n 1 --big "$BIG" --expect rs2 --timeout-ms 60000 $len) || { TCP_ERR=$((TCP_ERR + 1)); echo "$o" | head -3; }
        echo "$o" | head -1 | field p50 | awk -v b="$BIG" '{if ($1 > 0) printf "%.0f\n", b / 1e6 / ($1 / 1000)}' >> "$W/tcp_bulk_$peer"
    done
    r=$((r + 1))
done
for p in direct l7mark haproxy; do echo "TCP $p: $(stats "$W/tcp_rate_$p") conn/s, seq p50 $(stats "$W/tcp_p50_$p") us, bulk $(stats "$W/tcp_bulk_$p") MB/s"; done
TCP_BOUND=$(metric l7mark_binder_bound_total)
TCP_HOLD_TO=$(metric l7mark_binder_hold_timeouts_total)
TCP_REINJ=$(metric l7mark_binder_reinject_errors_total)
TCP_GATE=$(metric l7mark_binder_gate_unknown_total)
errsum() { awk '{s += $1} END {print s + 0}' "$W/tcp_err_$1"; }

# ---- 4a. memory while holding 1k unbound flows ---------------------------------------------------
echo "== memory: 1000 unbound flows (request head cut inside the Host line)"
bg_start "$L7M_RUN/hold.pid" "$W/hold.log" "$L7M_IP" netns exec "$NS_CLIENT" "$TESTKIT" http-hold --to "$VIP_L7:80" --host h1.exa --n 1000 --hold-ms 2500
wait_for 20 grep -q HOLD "$W/hold.log"
sleep 0.5
RSS_HOLD=$(rss_kb); HOLD_FLOWS=$(metric l7mark_binder_unbound_flows); HOLD_BYTES=$(metric l7mark_binder_held_bytes)
HOLD_OPEN=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' "$W/hold.log")
echo "held: opened=$HOLD_OPEN unbound_flows=$HOLD_FLOWS held_bytes=$HOLD_BYTES RSS ${RSS_HOLD} kB"
wait_for 20 sh -c "! kill -0 $(cat "$L7M_RUN/hold.pid") 2>/dev/null"
rm -f "$L7M_RUN/hold.pid"

# ---- 3b. swapping a 10k-rule table through the API ----------------------------------------------
mkdoc() { # N SALT -> rules document with N Host rules
    awk -v n="$1" -v s="$2" 'BEGIN {print "{ \"default_mark\": 100, \"rules\": ["
        for (i = 1; i <= n; i++) printf "  {\"id\": \"r%d\", \"host\": \"h%d.%s.bench.example\", \"mark\": %d}%s\n", i, i, s, 110 + i % 50, (i < n) ? "," : ""
        print "] }"}'
}
mkdoc 10000 a > "$W/rules10k-a.json"; mkdoc 10000 b > "$W/rules10k-b.json"; mkdoc 100000 c > "$W/rules100k.json"
api() { dir_exec curl -s --max-time 60 "$@"; }
put_rules() { # FILE -> "HTTP-code seconds"
    _etag=$(api -sI http://127.0.0.1:9180/v1/rules | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" {print $2}')
    api -o /dev/null -w '%{http_code} %{time_total}\n' -X PUT -H "If-Match: $_etag" \
        -H 'Content-Type: application/json' --data-binary "@$1" http://127.0.0.1:9180/v1/rules
}
echo "== rules: $RUNS swaps of a 10k-rule table (PUT /v1/rules, If-Match)"
SWAP_ERR=0
r=0
while [ $r -lt "$RUNS" ]; do
    f=$W/rules10k-a.json; [ $((r % 2)) = 1 ] && f=$W/rules10k-b.json
    o=$(put_rules "$f"); set -- $o
    [ "$1" = 200 ] || SWAP_ERR=$((SWAP_ERR + 1))
    awk -v t="$2" 'BEGIN {print t * 1000}' >> "$W/swap_put"
    sleep 0.3
    metric l7mark_table_last_swap_seconds | awk '{print $1 * 1000}' >> "$W/swap_last"
    r=$((r + 1))
done
SWAP_RULES=$(metric l7mark_table_rules)
echo "PUT $(stats "$W/swap_put") ms, last_swap $(stats "$W/swap_last") ms, rules=$SWAP_RULES errors=$SWAP_ERR"

# ---- 4b. memory with 100k rules ------------------------------------------------------------------
o=$(put_rules "$W/rules100k.json"); set -- $o; PUT100K_CODE=$1; PUT100K_MS=$(awk -v t="$2" 'BEGIN {printf "%.0f", t * 1000}')
sleep 1
RSS_100K=$(rss_kb); RULES_100K=$(metric l7mark_table_rules)
echo "100k rules: PUT $PUT100K_CODE in $PUT100K_MS ms, table_rules=$RULES_100K RSS ${RSS_100K} kB"
put_rules "$W/rules100.json" >/dev/null
lab_l7mark_stop
for f in "$L7M_RUN"/haproxy.pid "$L7M_RUN"/icp313*.pid; do bg_stop "$f"; done

# ---- 3a. lookup micro-benchmark ------------------------------------------------------------------
echo "== cargo bench --bench rules_lookup"
(cd "$REPO" && cargo bench -q --bench rules_lookup 2>/dev/null) > "$W/lookup.txt" || echo "rules_lookup failed" >&2
cat "$W/lookup.txt"
LOOKUP_100K=$(awk -F'|' '$1 ~ /^ *10[0-9][0-9][0-9][0-9] *$/ {split($3, a, " "); print a[1]}' "$W/lookup.txt" | head -1)

# ---- 5. docs/performance.md ----------------------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM_GB=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
HAPROXY_V=$(haproxy -v | head -1 | awk '{print $3}')
T_END=$(date +%s)
m() { med "$W/$1"; }
R_LH=$(ratio "$(m tcp_rate_l7mark)" "$(m tcp_rate_haproxy)")
R_LD=$(ratio "$(m tcp_rate_l7mark)" "$(m tcp_rate_direct)")
C_LH=$(ratio "$(m tcp_crate_l7mark)" "$(m tcp_crate_haproxy)")
C_LD=$(ratio "$(m tcp_crate_l7mark)" "$(m tcp_crate_direct)")
TCP_ADD50=$(delta "$(m tcp_p50_l7mark) - $(m tcp_p50_direct)" 0)
TCP_ADD99=$(delta "$(m tcp_p99_l7mark) - $(m tcp_p99_direct)" 0)
HA_ADD50=$(delta "$(m tcp_p50_haproxy) - $(m tcp_p50_direct)" 0)
HA_ADD99=$(delta "$(m tcp_p99_haproxy) - $(m tcp_p99_direct)" 0)
mkdir -p "$(dirname "$OUT")"
if [ "$(errsum l7mark)" -gt 0 ]; then
    STALL_TEXT="**Stalls:** $(errsum l7mark) l7mark connections got no answer within the client's 10 s; one
10 s stall in a run of $N_CONN connections takes that run's rate to ~200 conn/s, hence the minimum of
the l7mark rate and the \"completed connections only\" row. A defect to chase, not a throughput limit."
else
    STALL_TEXT="**Stalls:** none (an earlier run of this benchmark found a few: a new connection reusing a
client port had its cookie ACK taken for a stray of the previous connection; fixed in the binder)."
fi
cat > "$OUT" <<EOF
# Performance

Generated by \`bench/run.sh\` (issue #8) on $(date -u '+%Y-%m-%d %H:%M UTC') in $((T_END - T_START)) s.
Re-run it as root from the repository (it builds the release binaries, installs what is missing
with apt-get, builds network namespaces \`l7b-*\` and removes them at exit, and rewrites this file):

    sudo bench/run.sh                  # RUNS=5 N_CONN=2000 CONC=8 N_SEQ=500 UDP_SECS=2 UDP_CLIENTS=2

Not part of CI. Every figure below was measured **in the same run, side by side**: the peers
alternate run by run (the order rotates every run), and each cell is the **median [min..max] of
$RUNS runs**.

> **IPVS stand-in.** The kernel this ran on has no IPVS (\`CONFIG_IP_VS\` unset) and no nft
> \`queue\` expression. As in the netns test lab (\`integration/netns/l7mark-lib.sh\`), nf_nat
> **DNAT by the released server SYN's mark at the output hook** -- where IPVS's \`ip_vs_in_hook\`
> acts on LOCAL_OUT -- stands in for IPVS, and the queues are installed with iptables-nft
> \`NFQUEUE\`. The daemon runs with \`[nft] manage = false\` and \`[binder] require_ipvs = false\`.
> Real IPVS scheduling costs are not in these numbers.

## Machine

| | |
|---|---|
| CPU | $(nproc) x $CPU_MODEL |
| Kernel | $(uname -r) |
| Memory | $MEM_GB GiB |
| Software | l7mark $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null), HAProxy $HAPROXY_V (Debian package), $(rustc --version 2>/dev/null) |
| Load | a shared machine (other builds and a VM test suite may run at the same time): absolute figures are noisy, the side-by-side ratios are the figures to read |

Topology (integration/lib/topology.sh): client netns -- veth -- director netns -- veth -- 3 real
server netns; every process (client, l7mark, HAProxy, real servers) shares the $(nproc) CPUs.
Real servers: \`l7mark-testkit http-server\` (a thread per connection); client: \`l7mark-testkit
http-load\` (connect + request + complete response, \`Connection: close\`, every answer checked,
including which real server sent it).

## Goals (issue #8)

| Goal | Measured | |
|---|---|---|
| UDP/ICP >= 200k classified datagrams/s per core, 0 drops | $UDP_PER_CORE /s per l7mark core ($(m udp_rate_l7mark) /s absolute at ${UDP_CPU}% of a core); drops: queue $UDP_Q, user $UDP_U | $(verdict "$UDP_PER_CORE >= 200000 && $UDP_Q + $UDP_U == 0") |
| TCP new conn/s >= 1.5x HAProxy | ${R_LH}x (completed connections only: ${C_LH}x) | $(verdict "$R_LH >= 1.5") |
| TCP new conn/s >= 85 % of direct | $(calc "$R_LD * 100" 0) % (completed connections only: $(calc "$C_LD * 100" 0) %) | $(verdict "$R_LD >= 0.85") |
| Added latency p50 <= 30 us over direct (UDP ping-pong) | $UDP_ADD50 us | $(verdict "$UDP_ADD50 <= 30") |
| Added latency p99 <= 100 us over direct (UDP ping-pong) | $UDP_ADD99 us | $(verdict "$UDP_ADD99 <= 100") |
| Added latency p50 <= 30 us over direct (TCP connect+request+response, sequential) | $TCP_ADD50 us | $(verdict "$TCP_ADD50 <= 30") |
| Added latency p99 <= 100 us over direct (TCP, sequential) | $TCP_ADD99 us | $(verdict "$TCP_ADD99 <= 100") |
| Rule lookup <= 1 us at 100k rules | ${LOOKUP_100K:-?} ns | $(verdict "${LOOKUP_100K:-1e9} <= 1000") |
| Swap a 10k-rule table <= 100 ms | PUT $(m swap_put) ms; \`l7mark_table_last_swap_seconds\` $(m swap_last) ms | $(verdict "$(m swap_put) <= 100") |

## 1. UDP / ICP (one l7mark worker)

$UDP_CLIENTS client processes in the client netns, each \`l7mark-testkit icp-flood\` from one socket
with $UDP_WINDOW queries in flight for $UDP_SECS s (closed loop), to a quiet ICP responder
(\`icp-echo\`) on the director's VIP. **l7mark**: port 3130, \`iptables-nft ... -j NFQUEUE\` at
PREROUTING, classified by l7mark (ICP URL-hash rule), verdict with a mark. **direct**: port 3131,
the same path and the same MARK rule, no queue. Latency: one client, one query in flight (ping-pong
round trip), 1 s.

| | direct (no queue) | l7mark | l7mark / direct |
|---|---|---|---|
| datagrams/s (replies) | $(stats "$W/udp_rate_direct") | $(stats "$W/udp_rate_l7mark") | $(ratio "$(m udp_rate_l7mark)" "$(m udp_rate_direct)") |
| round trip p50, us | $(stats "$W/udp_p50_direct") | $(stats "$W/udp_p50_l7mark") | $UDP_ADD50 us |
| round trip p99, us | $(stats "$W/udp_p99_direct") | $(stats "$W/udp_p99_l7mark") | $UDP_ADD99 us |

On this shared 2-vCPU KVM guest a ping-pong round trip is dominated by cross-vCPU wakeups
(20-50 us each, see the pilot in the project's performance research) and by whatever else runs;
the busy l7mark thread also keeps a vCPU awake. A negative "added" latency means the difference
is below this noise, not that the queue is free: read the ranges, not only the medians.

* l7mark CPU during the flood: **${UDP_CPU}% of one core** (utime+stime of the daemon over the runs;
  after a verdict the rest of the packet's receive path runs in l7mark's context and is counted
  here). Per core: median rate / CPU share = **$UDP_PER_CORE datagrams/s**.
* Over all l7mark runs: \`l7mark_nfqueue_queue_dropped_total\` +$UDP_Q,
  \`l7mark_nfqueue_user_dropped_total\` +$UDP_U, \`l7mark_nfqueue_undelivered_estimate\` +$UDP_N,
  \`l7mark_queue_overflows_total\` +$UDP_O; queries without a reply (client side, 100 ms timeout):
  l7mark $UDP_LOST, direct $UDP_LOST_D.

## 2. TCP (HTTP, delayed binding)

Host \`$HOST\` (rule 97 of 100: HAProxy evaluates 97 \`hdr(host)\` ACLs, l7mark one indexed lookup),
answered by rs2. **direct**: the client connects to rs2's address, routed by the director (no
director rules). **l7mark**: VIP $VIP_L7:80, SYNPROXY + l7mark delayed binding with 100 Host rules,
DNAT-by-mark stand-in for IPVS. **HAProxy** $HAPROXY_V: \`mode http\`, the same 100 rules as
\`acl hN hdr(host) -i hN.example\` + \`use_backend\`, backends = the same real servers, in the
director netns on $VIP_L4:80, default threads (one per CPU).

| | direct | l7mark | HAProxy | l7mark / HAProxy | l7mark / direct |
|---|---|---|---|---|---|
| new conn/s ($N_CONN conns, $CONC concurrent) | $(stats "$W/tcp_rate_direct") | $(stats "$W/tcp_rate_l7mark") | $(stats "$W/tcp_rate_haproxy") | $R_LH | $R_LD |
| conn/s of the completed connections only ($CONC / their mean latency: stalls left out) | $(stats "$W/tcp_crate_direct") | $(stats "$W/tcp_crate_l7mark") | $(stats "$W/tcp_crate_haproxy") | $C_LH | $C_LD |
| p50 ms at $CONC concurrent | $(stats "$W/tcp_cp50_direct") | $(stats "$W/tcp_cp50_l7mark") | $(stats "$W/tcp_cp50_haproxy") | | |
| p99 ms at $CONC concurrent | $(stats "$W/tcp_cp99_direct") | $(stats "$W/tcp_cp99_l7mark") | $(stats "$W/tcp_cp99_haproxy") | | |
| sequential p50 us (connect+request+response) | $(stats "$W/tcp_p50_direct") | $(stats "$W/tcp_p50_l7mark") | $(stats "$W/tcp_p50_haproxy") | l7mark $TCP_ADD50 us | HAProxy $HA_ADD50 us |
| sequential p99 us | $(stats "$W/tcp_p99_direct") | $(stats "$W/tcp_p99_l7mark") | $(stats "$W/tcp_p99_haproxy") | l7mark $TCP_ADD99 us | HAProxy $HA_ADD99 us |
| bulk: one $((BIG / 1000000)) MB response, MB/s | $(stats "$W/tcp_bulk_direct") | $(stats "$W/tcp_bulk_l7mark") | $(stats "$W/tcp_bulk_haproxy") | $(ratio "$(m tcp_bulk_l7mark)" "$(m tcp_bulk_haproxy)") | $(ratio "$(m tcp_bulk_l7mark)" "$(m tcp_bulk_direct)") |

Failed connections in the $N_CONN-connection runs (client timeout 10 s, counted as failures, not
in the latencies, but their wait is in the wall time of the rate): direct $(errsum direct),
l7mark $(errsum l7mark), HAProxy $(errsum haproxy); runs with an error or misroute: $TCP_ERR.
Binder counters after the TCP runs: \`l7mark_binder_bound_total\` = $TCP_BOUND,
\`l7mark_binder_hold_timeouts_total\` = $TCP_HOLD_TO, \`l7mark_binder_reinject_errors_total\` =
$TCP_REINJ, \`l7mark_binder_gate_unknown_total\` = $TCP_GATE.
$STALL_TEXT
The latency is to the end of the (small) response:
for a ~100-byte answer that is the first response byte. The bulk figure includes the test server
generating and the client checking every byte (the same for every peer).

## 3. Rules

Lookup (\`cargo bench --bench rules_lookup\`: indexed table vs a linear scan of the same rules):

\`\`\`
$(cat "$W/lookup.txt")
\`\`\`

Swapping a 10k-rule table through the API (\`PUT /v1/rules\` with \`If-Match\`, the document
alternating between two different 10k-rule documents; request time measured by curl in the
director; validation, the atomic write of the rules file and the swap included):

| | median [min..max] of $RUNS |
|---|---|
| PUT /v1/rules request, ms | $(stats "$W/swap_put") |
| \`l7mark_table_last_swap_seconds\`, ms | $(stats "$W/swap_last") |

(rules in the table afterwards: $SWAP_RULES; failed PUTs: $SWAP_ERR; a 100k-rule PUT took $PUT100K_MS ms.)

## 4. Memory (VmRSS of the daemon)

| state | VmRSS |
|---|---|
| idle, 100 Host rules + 1 ICP rule | $RSS_IDLE kB |
| holding 1000 unbound flows (\`l7mark_binder_unbound_flows\` = $HOLD_FLOWS, held bytes $HOLD_BYTES; $HOLD_OPEN clients connected, request head cut inside the Host line) | $RSS_HOLD kB |
| 100k rules loaded (PUT $PUT100K_CODE, \`l7mark_table_rules\` = $RULES_100K) | $RSS_100K kB |

RSS is read once per state (after the UDP and TCP runs, so allocator high-water marks from
those are included in the later rows).
EOF
echo "== wrote $OUT ($((T_END - T_START)) s)"

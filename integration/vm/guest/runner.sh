#!/bin/sh
# integration/vm/guest/runner.sh -- runs inside the guest (busybox sh), started by /init.
#
#   runner.sh                 boot mode: load modules, run the tests named in /results/run.conf,
#                             write /results/results.txt and /results/done; shell if L7M_KEEP=1
#   runner.sh --run TEST...   from the debug shell: reset + run these tests again (names or NN)
#   runner.sh --reset         from the debug shell: reset the state, topology up
#
# Before every test the state is reset (see reset_state): every process but init and this runner
# is killed, the netns topology is torn down and rebuilt, IPVS is cleared (services, timeouts, and
# the connection table: the ip_vs modules are reloaded),
# the nft ruleset is flushed, conntrack is flushed, ip rules and the root netns' sysctls
# (net.core, net.ipv4, net.ipv4.vs, net.netfilter, conf/{all,default,lo}) are restored to their
# values at boot, and the six real-server httpds are started again.
set -u
L7M_REPO=/l7mark
L7M_RESULTS=/results
TESTS_DIR=$L7M_REPO/integration/vm/tests
L7M_PFX=""; L7M_DIR_NS=""; L7M_IP=/bin/ip; L7M_RUN=/run/l7m
L7M_TLS_DIR=/etc/l7mark-test/tls; L7M_BUSYBOX=/bin/busybox
L7M_TOPO_KILL=0                   # reset_state kills every process itself
export L7M_REPO L7M_RESULTS
# shellcheck source=../../lib/common.sh
. "$L7M_REPO/integration/lib/common.sh"
trap - EXIT                       # common.sh's exit verdict is for tests, not for the runner
# shellcheck source=../../lib/topology.sh
. "$L7M_REPO/integration/lib/topology.sh"

L7M_TESTS=""; L7M_KEEP=0; L7M_TEST_TIMEOUT=300
# shellcheck disable=SC1091
[ -f "$L7M_RESULTS/run.conf" ] && . "$L7M_RESULTS/run.conf"

IPVS_MODULES="ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_dh ip_vs_mh ip_vs_sed ip_vs_nq
 ip_vs_fo ip_vs_ovf ip_vs_lblc ip_vs_lblcr"
MODULES="$IPVS_MODULES nf_conntrack nf_conntrack_netlink nf_tables nft_ct nft_queue
 nfnetlink_queue nft_nat nft_chain_nat nft_masq nft_reject_inet nf_synproxy_core nft_synproxy xt_NFQUEUE
 veth"
SNAP=/run/l7m-boot-sysctl.txt

say() { echo "L7MARK-GUEST: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

load_modules() {
    # shellcheck disable=SC2086
    modprobe -a $MODULES 2>&1 || { say "modprobe -a failed"; }
    modprobe dummy numdummies=0 2>&1        # (numdummies=0: no stray dummy0)
    _bad=""
    for _m in $MODULES dummy; do grep -q "^$_m " /proc/modules || _bad="$_bad $_m"; done
    [ -z "$_bad" ] || { say "modules missing after modprobe:$_bad"; return 1; }
}

sysctl_files() {
    for _f in /proc/sys/net/core/* /proc/sys/net/ipv4/* /proc/sys/net/ipv4/vs/* /proc/sys/net/netfilter/* \
              /proc/sys/net/ipv4/conf/all/* /proc/sys/net/ipv4/conf/default/* /proc/sys/net/ipv4/conf/lo/* \
              /proc/sys/net/ipv6/conf/all/* /proc/sys/net/ipv6/conf/default/* /proc/sys/net/ipv6/conf/lo/*; do
        [ -f "$_f" ] && [ -w "$_f" ] && echo "$_f"
    done
}
snapshot_state() {
    : > "$SNAP"
    for _f in $(sysctl_files); do
        read -r _v < "$_f" 2>/dev/null && printf '%s %s\n' "$_f" "$_v" >> "$SNAP"
    done
    ip rule show > /run/l7m-boot-rules4.txt
    ip -6 rule show > /run/l7m-boot-rules6.txt
    ipvsadm -L --timeout | awk '{print $(NF - 2), $(NF - 1), $NF}' > /run/l7m-boot-ipvs-timeouts.txt
}
restore_sysctls() {
    while read -r _f _v; do
        read -r _cur < "$_f" 2>/dev/null || continue
        [ "$_cur" = "$_v" ] && continue
        echo "$_v" > "$_f" 2>/dev/null || echo "reset: cannot restore $_f (now '$_cur', boot '$_v')"
    done < "$SNAP"
}

# This runner and its ancestors (init; in --run mode also the debug shell and the boot runner)
# survive the reset, and so do the other children of the shells between this runner and the boot
# runner (e.g. "tail" in "l7m_test 10 | tail" typed in the debug shell). The boot runner's own
# children (the real servers it started) do not.
KEEP_PIDS=" "
KEEP_PARENTS=" "
_p=$$
while [ "$_p" -gt 1 ]; do
    KEEP_PIDS="$KEEP_PIDS$_p "
    _pp=$(awk '/^PPid:/ {print $2}' "/proc/$_p/status") || break
    [ "$_p" != "$$" ] && [ "$_pp" -gt 1 ] && KEEP_PARENTS="$KEEP_PARENTS$_p "
    _p=$_pp
done
# kill_strays SIG: signal every user process but init, KEEP_PIDS and children of KEEP_PARENTS;
# sets KILLED.
# Runs in the current shell on purpose: called from a $(...) subshell it would kill that subshell.
kill_strays() {
    KILLED=0; _sig=$1
    for _d in /proc/[0-9]*; do
        _p=${_d#/proc/}
        [ "$_p" = 1 ] && continue
        case $KEEP_PIDS in *" $_p "*) continue ;; esac
        [ -e "$_d/exe" ] || continue                  # kernel threads and zombies have no exe
        read -r _st < "$_d/stat" 2>/dev/null || continue
        _st=${_st##*) }                               # after "pid (comm) ": state ppid pgrp ...
        # shellcheck disable=SC2086
        set -- $_st
        case $KEEP_PARENTS in *" $2 "*) continue ;; esac
        kill "-$_sig" "$_p" 2>/dev/null && KILLED=$((KILLED + 1))
    done
}

reset_state() {
    _r0=$(uptime_s)
    kill_strays TERM
    _nk=$KILLED
    if [ "$_nk" -gt 0 ]; then sleep 0.3; kill_strays KILL; fi
    _r1=$(uptime_s)
    topo_down
    _r2=$(uptime_s)
    ipvsadm -C || return 1
    # "ipvsadm -C" leaves the connection table (entries, persistence templates) to expire on its
    # own: if it is not empty, reload IPVS to start empty
    if awk 'NR > 1 {found = 1} END {exit !found}' /proc/net/ip_vs_conn; then
        # shellcheck disable=SC2046
        rmmod $(awk '$1 ~ /^ip_vs_/ {print $1}' /proc/modules) ip_vs || return 1
        # shellcheck disable=SC2086
        modprobe -a $IPVS_MODULES || return 1
    fi
    # shellcheck disable=SC2046
    ipvsadm --set $(cat /run/l7m-boot-ipvs-timeouts.txt) || return 1
    nft flush ruleset || return 1
    conntrack -F > /dev/null 2>&1
    if ! ip rule show | cmp -s - /run/l7m-boot-rules4.txt; then
        ip rule flush && ip rule add priority 32766 lookup main && ip rule add priority 32767 lookup default
    fi
    if ! ip -6 rule show | cmp -s - /run/l7m-boot-rules6.txt; then
        ip -6 rule flush && ip -6 rule add priority 32766 lookup main
    fi
    _r3=$(uptime_s)
    restore_sysctls
    rm -rf "$L7M_RUN" /tmp/l7m-test
    mkdir -p "$L7M_RUN" /tmp/l7m-test
    _r4=$(uptime_s)
    topo_up || return 1
    echo "reset: ${_r0}s..$(uptime_s)s: killed $_nk processes ..${_r1}s, topo_down ..${_r2}s," \
        "ipvs/nft/conntrack/rules ..${_r3}s, sysctls ..${_r4}s, topo_up ..$(uptime_s)s"
}

resolve_test() { # NAME-or-NN -> path
    for _t in "$TESTS_DIR"/*.sh; do
        _b=${_t##*/}; _b=${_b%.sh}
        case $1 in "$_b"|"$_b.sh"|"${_b%%-*}") echo "$_t"; return 0 ;; esac
    done
    return 1
}

run_one() { # PATH -> prints the result line, appends it to results.txt; 0 = PASS
    _t=$1; _name=${_t##*/}; _name=${_name%.sh}
    _log=$L7M_RESULTS/logs/$_name.log
    mkdir -p "$L7M_RESULTS/logs" "$L7M_RESULTS/artifacts/$_name"
    echo; say "===== $_name (reset, then run; log: results/logs/$_name.log)"
    _t0=$(uptime_s)
    if ! reset_state > /run/l7m-reset.log 2>&1; then
        { echo "harness: resetting the state before the test failed:"; cat /run/l7m-reset.log; topo_show; } > "$_log" 2>&1
        _verdict="FAIL"; _why=" [reset failed]"
    else
        cat /run/l7m-reset.log
        _t0=$(uptime_s)
        ( cd /tmp/l7m-test && L7M_TEST_NAME=$_name L7M_ARTIFACTS=$L7M_RESULTS/artifacts/$_name \
            exec timeout -s KILL "$L7M_TEST_TIMEOUT" /bin/sh "$_t" ) > "$_log" 2>&1 < /dev/null
        _rc=$?
        _why=""
        if [ "$_rc" = 0 ]; then _verdict=PASS; else
            _verdict=FAIL
            [ "$_rc" = 137 ] && _why=" [killed after the ${L7M_TEST_TIMEOUT}s test timeout]"
            echo "harness: test exit status $_rc$_why" >> "$_log"
        fi
    fi
    cp "$L7M_RUN"/*.log "$L7M_RESULTS/artifacts/$_name/" 2>/dev/null   # real servers' logs
    _secs=$(awk -v a="$_t0" -v b="$(uptime_s)" 'BEGIN{printf "%.1f", b - a}')
    sed "s/^/[$_name] /" "$_log"
    _line="TEST $_name: $_verdict (${_secs}s)$_why"
    echo "$_line"
    echo "$_line" >> "$L7M_RESULTS/results.txt"
    [ "$_verdict" = PASS ]
}

shell_help() {
    cat <<EOF

L7MARK-GUEST: debug shell (L7MARK_VM_KEEP=1). The state the last test left is still up
(with no test run: a freshly reset topology).
  l7m_test NAME|NN...    reset the state and run tests again (the repo is live over 9p:
                         edit a test on the host, run it here again, no reboot needed)
  l7m_reset              reset the state and bring the topology up (no test)
  topo_show              addresses and routes of all namespaces
  ip netns exec client curl http://10.0.0.100/     ipvsadm -Ln     nft list ruleset
  nft monitor trace      (after: nft add rule ... meta nftrace set 1)
  logs: /results/logs/   leave: poweroff -f   (or Ctrl-A x in qemu)
EOF
}

debug_shell() {
    cat > /etc/l7m-shell.sh <<EOF
L7M_REPO=$L7M_REPO; L7M_PFX=""; L7M_DIR_NS=""; L7M_IP=/bin/ip; L7M_RUN=$L7M_RUN
L7M_TLS_DIR=$L7M_TLS_DIR; L7M_BUSYBOX=$L7M_BUSYBOX; L7M_TOPO_KILL=1
. $L7M_REPO/integration/lib/common.sh; trap - EXIT
. $L7M_REPO/integration/lib/topology.sh
l7m_test()  { /bin/sh $L7M_REPO/integration/vm/guest/runner.sh --run "\$@"; }
l7m_reset() { /bin/sh $L7M_REPO/integration/vm/guest/runner.sh --reset; }
PS1='l7mark-vm:\w# '
EOF
    shell_help
    ENV=/etc/l7m-shell.sh setsid cttyhack /bin/sh -i
}

# ---- debug-shell entry points -----------------------------------------------------------------------
if [ "${1:-}" = --reset ]; then reset_state; exit; fi
if [ "${1:-}" = --run ]; then
    shift; _rc=0
    for _a in "$@"; do
        _p=$(resolve_test "$_a") || { echo "no test matches '$_a' in $TESTS_DIR"; _rc=1; continue; }
        run_one "$_p" || _rc=1
    done
    exit "$_rc"
fi

# ---- boot mode ------------------------------------------------------------------------------------
say "runner start, uptime $(uptime_s)s"
: > "$L7M_RESULTS/results.txt"
setup_ok=1
load_modules || setup_ok=0
ip link set lo up
[ "$setup_ok" = 1 ] && { snapshot_state || setup_ok=0; }
say "modules loaded, uptime $(uptime_s)s"
npass=0; nfail=0
for _a in $L7M_TESTS; do
    _p=$(resolve_test "$_a") || { echo "TEST $_a: FAIL (0.0s) [no such test]" | tee -a "$L7M_RESULTS/results.txt"; nfail=$((nfail + 1)); continue; }
    if [ "$setup_ok" != 1 ]; then
        _n=${_p##*/}; echo "TEST ${_n%.sh}: FAIL (0.0s) [guest setup failed]" | tee -a "$L7M_RESULTS/results.txt"
        nfail=$((nfail + 1)); continue
    fi
    if run_one "$_p"; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
done
say "tests done: $npass passed, $nfail failed, uptime $(uptime_s)s"
echo "DONE passed=$npass failed=$nfail uptime=$(uptime_s)" > "$L7M_RESULTS/done"
sync
if [ "$L7M_KEEP" = 1 ]; then
    if [ -z "$L7M_TESTS" ] && [ "$setup_ok" = 1 ]; then
        reset_state || say "reset failed: the topology may be incomplete"
    fi
    debug_shell
fi
exit 0

#!/bin/bash
# integration/netns/run.sh -- run the netns tests (integration/netns/tests/NN-name.sh, dash) on the
# host kernel. Each test gets a freshly built topology (integration/netns/topo.sh); everything is
# torn down afterwards, also on failure or Ctrl-C.
#
# usage: integration/netns/run.sh [TEST...]   TEST = file name without .sh, or its NN prefix
#        integration/netns/run.sh --list
#
# Exit status 0 only if every selected test passed. Must run as root; installs what it needs
# with apt-get (only what is missing).
#
# Environment:
#   L7MARK_NETNS_WORK=DIR        logs (default <repo>/integration/work/netns)
#   L7MARK_NETNS_TEST_TIMEOUT=120  seconds per test
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib/host.sh
. "$REPO/integration/lib/host.sh"

WORK=${L7MARK_NETNS_WORK:-$REPO/integration/work/netns}
TEST_TIMEOUT=${L7MARK_NETNS_TEST_TIMEOUT:-120}
TESTS_DIR=$HERE/tests
export L7M_REPO=$REPO L7M_RUN=/run/l7m-netns

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
all_tests() { for f in "$TESTS_DIR"/[0-9]*.sh; do [ -e "$f" ] && basename "$f" .sh; done; }
SELECTED=()
for a in "$@"; do
    case $a in
        -h|--help) usage; exit 0 ;;
        --list) all_tests; exit 0 ;;
        -*) die "unknown option $a" ;;
        *)
            a=${a%.sh}; a=${a##*/}; found=0
            while read -r t; do
                if [ "$t" = "$a" ] || [ "${t%%-*}" = "$a" ]; then SELECTED+=("$t"); found=1; fi
            done < <(all_tests)
            [ "$found" = 1 ] || die "no test matches '$a' in $TESTS_DIR (--list shows them)"
            ;;
    esac
done
[ "${#SELECTED[@]}" -gt 0 ] || mapfile -t SELECTED < <(all_tests)
[ "${#SELECTED[@]}" -gt 0 ] || die "no tests in $TESTS_DIR"

require_root
ensure_cmds ip:iproute2 nft:nftables iptables-nft:iptables busybox:busybox-static curl:curl \
    socat:socat openssl:openssl flock:util-linux timeout:coreutils dash:dash

# one run at a time: the namespace names are fixed
mkdir -p "$L7M_RUN" "$WORK/logs"
exec 9> "$L7M_RUN.lock"
flock -n 9 || die "another integration/netns run holds $L7M_RUN.lock"

topo() { dash "$HERE/topo.sh" "$@"; }
# shellcheck disable=SC2317  # trap handler
cleanup() { topo down > /dev/null 2>&1 || true; rm -rf "$L7M_RUN"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add l7m-probe 2>/dev/null || die "cannot create network namespaces (ip netns add failed)"
ip netns del l7m-probe
mkdir -p "$L7M_RUN/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj "/CN=l7mark-test" \
    -keyout "$L7M_RUN/tls/key.pem" -out "$L7M_RUN/tls/cert.pem" 2>/dev/null || die "openssl: test certificate"

rm -f "$WORK"/logs/*.log
npass=0; nfail=0; failed=()
T0=$(date +%s.%N)
for t in "${SELECTED[@]}"; do
    log="$WORK/logs/$t.log"
    t0=$(date +%s.%N); why=""
    if ! topo up > "$log" 2>&1; then
        verdict=FAIL; why=" [topology setup failed]"
    else
        rc=0
        (cd "$L7M_RUN" && L7M_TEST_NAME=$t L7M_ARTIFACTS=$WORK/logs timeout -s KILL "$TEST_TIMEOUT" dash "$TESTS_DIR/$t.sh") \
            >> "$log" 2>&1 < /dev/null || rc=$?
        if [ "$rc" = 0 ]; then verdict=PASS; else
            verdict=FAIL
            [ "$rc" = 137 ] && why=" [killed after the ${TEST_TIMEOUT}s test timeout]"
            echo "harness: test exit status $rc$why" >> "$log"
        fi
    fi
    topo down >> "$log" 2>&1 || true
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
    echo "TEST $t: $verdict (${secs}s)$why"
    if [ "$verdict" = PASS ]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); failed+=("$t"); fi
done
for t in "${failed[@]}"; do
    echo "----- $t: last 40 log lines ($WORK/logs/$t.log):"
    tail -n 40 "$WORK/logs/$t.log"
done
left=$(ip netns list | grep -c '^l7m-' || true)
[ "$left" = 0 ] || { echo "harness: $left l7m-* namespaces left behind"; nfail=$((nfail + 1)); }
total=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
echo
echo "SUMMARY: ${npass} passed, ${nfail} failed of ${#SELECTED[@]} (${total}s); logs: $WORK/logs/"
[ "$nfail" = 0 ] && exit 0
exit 1

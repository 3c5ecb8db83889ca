# shellcheck shell=sh
# shellcheck disable=SC2034  # settings read by topology.sh
# integration/vm/lib.sh -- sourced by every VM test (busybox sh in the guest):
#
#     . "$L7M_REPO/integration/vm/lib.sh"
#
# The test starts with the topology up and fresh (see integration/README.md). It provides:
#   from integration/lib/common.sh:   step ok fail fatal check run wait_for expect_eq expect_ge
#                                     count_words distinct
#   from integration/lib/topology.sh: constants (VIP_L7 VIP_L4 VIP6 CLIENT_IP RS1_IP ... NS_CLIENT),
#                                     ip nsx dir_exec client_exec rs_exec rs_ip rs_ip6 rs_if rs_docroot
#                                     http_get curl_get http_get_any http_from who_answers udp_queries
#                                     rs_http_start/stop rs_tls_start/stop rs_udp_start/stop
#                                     bg_start bg_stop topo_show
#   VM only (below): ipvs_conns ipvs_stats_wait ipvs_dests nft_counter need_bin L7MARK_IPVS
#
# Pitfalls inside the guest (Debian's busybox prefers its own applets):
#   * a bare "ip" is busybox's applet (no netns support): use the ip() function here or /bin/ip;
#     never "timeout 5 ip ..." (that runs the applet again) -- "timeout 5 /bin/ip ...".
#   * busybox 1.35 "wget -T N" segfaults: use http_get (curl) or "timeout N wget".
#   * IPVS --stats counters are refreshed by a 2 s estimator timer: use ipvs_stats_wait.
set -u

L7M_REPO=${L7M_REPO:-/l7mark}
L7M_RESULTS=${L7M_RESULTS:-/results}
L7M_PFX=""
L7M_DIR_NS=""
L7M_IP=/bin/ip
L7M_RUN=/run/l7m
L7M_TLS_DIR=/etc/l7mark-test/tls
L7M_BUSYBOX=/bin/busybox
L7M_TOPO_KILL=1
# shellcheck source=../lib/common.sh
. "$L7M_REPO/integration/lib/common.sh"
# shellcheck source=../lib/topology.sh
. "$L7M_REPO/integration/lib/topology.sh"

L7MARK_IPVS="$L7M_REPO/ipvs-scripts/l7mark-ipvs"   # the operators' tool, run from the repo

# ipvs_conns MARK [-6]: the service's "Conns" counter (empty if the service does not exist)
ipvs_conns() {
    ipvsadm -Ln --stats -f "$@" 2>/dev/null | awk '$1 == "FWM" {print $3; exit}'
}
# ipvs_stats_wait MARK MIN [SECS=8]: wait until the service counted at least MIN connections.
# (kernel 6.1 updates the user-visible counters in a 2 s estimator timer)
ipvs_stats_wait() {
    wait_for "${3:-8}" _ipvs_conns_ge "$1" "$2"
}
_ipvs_conns_ge() { _c=$(ipvs_conns "$1"); [ -n "$_c" ] && [ "$_c" -ge "$2" ]; }
# ipvs_dests MARK [-6]: the service's real servers as "addr:port" words, sorted
ipvs_dests() {
    _m=$1; shift
    ipvsadm -Sn 2>/dev/null | awk -v m="$_m" -v six="${1:-}" '
        $1 == "-a" && $2 == "-f" && $3 == m {
            v6 = ($4 == "-6"); if ((six == "-6") != v6) next
            for (i = 4; i <= NF; i++) if ($i == "-r") print $(i + 1)
        }' | sort | tr '\n' ' ' | sed 's/ $//'
}
# nft_counter FAMILY TABLE CHAIN COMMENT: packets counted by the rule carrying comment "COMMENT"
nft_counter() {
    nft list chain "$1" "$2" "$3" 2>/dev/null | awk -v c="comment \"$4\"" '
        index($0, c) { for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
}
# need_bin NAME: the test needs a host-built binary (L7MARK_GUEST_BINS); fail loudly if absent
need_bin() {
    command -v "$1" >/dev/null 2>&1 \
        || fatal "$1 is not in the guest: build it (cargo build --release) or name it in L7MARK_GUEST_BINS"
}

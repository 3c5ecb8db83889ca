# shellcheck shell=sh
# shellcheck disable=SC2034  # settings read by topology.sh
# integration/netns/lib.sh -- sourced by the host netns tests (dash), and by topo.sh:
#
#     . "$L7M_REPO/integration/netns/lib.sh"
#
# Same topology and helpers as the VM suite (integration/lib/topology.sh), on the host kernel, with
# every node in its own netns: l7m-client, l7m-dir (the director), l7m-rs1..3. Run commands in the
# director with dir_exec / dir_ip. The host kernel may have no IPVS and no nft "queue" expression:
# tests stand in for IPVS with DNAT by mark (see integration/README.md).
#   common:   step ok fail fatal check run wait_for expect_eq expect_ge count_words distinct
#   topology: constants, ip nsx dir_exec dir_ip client_exec rs_exec rs_ip ... http_get curl_get
#             http_from who_answers udp_queries rs_http_start/stop rs_tls_start/stop rs_udp_*, bg_*
#   here:     dir_nft nft_counter ipt_counter
set -u

L7M_REPO=${L7M_REPO:?L7M_REPO must point at the repository}
L7M_PFX=l7m-
L7M_DIR_NS=l7m-dir
L7M_IP=${L7M_IP:-$(command -v ip)}
L7M_RUN=${L7M_RUN:-/run/l7m-netns}
L7M_TLS_DIR=${L7M_TLS_DIR:-$L7M_RUN/tls}
L7M_BUSYBOX=${L7M_BUSYBOX:-/bin/busybox}
L7M_TOPO_KILL=1
# shellcheck source=../lib/common.sh
. "$L7M_REPO/integration/lib/common.sh"
# shellcheck source=../lib/topology.sh
. "$L7M_REPO/integration/lib/topology.sh"

dir_nft() { dir_exec nft "$@"; }
# nft_counter FAMILY TABLE CHAIN COMMENT: packets counted by the director's rule with that comment
nft_counter() {
    dir_nft list chain "$1" "$2" "$3" 2>/dev/null | awk -v c="comment \"$4\"" '
        index($0, c) { for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
}
# ipt_counter TABLE CHAIN RULENUM: packets of iptables-nft rule RULENUM in the director
ipt_counter() {
    dir_exec iptables-nft -t "$1" -L "$2" -v -n -x --line-numbers 2>/dev/null | awk -v n="$3" '$1 == n {print $2; exit}'
}

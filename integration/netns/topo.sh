#!/bin/sh
# integration/netns/topo.sh up|down|show -- the test topology in network namespaces on the host
# kernel: l7m-client, l7m-dir (director), l7m-rs1..3, veth links, httpd on :80/:8080 in each real
# server. Nothing touches the host's own network namespace. See integration/README.md.
#
#   sudo integration/netns/topo.sh up      # build it (fails, and cleans up, if a step fails)
#   sudo ip netns exec l7m-client curl http://10.0.2.2/
#   sudo integration/netns/topo.sh down    # kill its processes, delete the namespaces
set -u
L7M_REPO=$(cd "$(dirname "$0")/../.." && pwd)
export L7M_REPO
# shellcheck source=lib.sh
. "$L7M_REPO/integration/netns/lib.sh"
trap - EXIT                  # common.sh's exit verdict is for tests

[ "$(id -u)" = 0 ] || { echo "topo.sh: must run as root" >&2; exit 1; }
case ${1:-} in
    up)
        topo_down
        rm -rf "$L7M_RUN/www"
        if ! topo_up; then
            echo "topo.sh: topology setup failed; cleaning up" >&2
            topo_down
            exit 1
        fi
        echo "topology up: $NS_CLIENT $L7M_DIR_NS $NS_RS1 $NS_RS2 $NS_RS3"
        ;;
    down) topo_down ;;
    show) topo_show ;;
    *) echo "usage: $0 up|down|show" >&2; exit 2 ;;
esac

#!/bin/sh
# integration/lint.sh -- shellcheck every shell script of the harness and of ipvs-scripts/.
# (apt-get install shellcheck; 0.9 has no busybox dialect: guest scripts are checked as POSIX sh)
set -eu
cd "$(dirname "$0")/.."
command -v shellcheck >/dev/null || { echo "lint.sh: shellcheck not installed (apt-get install shellcheck)" >&2; exit 1; }
shellcheck -x -P SCRIPTDIR -s bash integration/vm/run.sh integration/netns/run.sh integration/lib/host.sh
shellcheck -x -P SCRIPTDIR -s sh integration/lint.sh integration/lib/common.sh integration/lib/topology.sh \
    integration/netns/lib.sh integration/netns/topo.sh integration/netns/tests/*.sh \
    integration/vm/lib.sh integration/vm/guest/init integration/vm/guest/runner.sh integration/vm/tests/*.sh \
    ipvs-scripts/l7mark-ipvs
echo "lint.sh: shellcheck clean"

#!/usr/bin/env bash
# The main job: l7mark on real IPVS, shown end to end.
#
#   integration/demo.sh
#
# Builds l7mark (release), boots Debian 12's own kernel in qemu (integration/vm/run.sh; installs
# what it needs with apt-get), and runs integration/vm/tests/90-demo.sh inside: HTTP by Host and
# path and TLS by SNI (delayed binding through SYNPROXY, IPVS NAT fwmark services with
# persistence) and ICP queries by URL (one-packet scheduling, DR). It prints the table
# request -> rule -> mark -> real server, expected vs got, changes a rule through the REST API and
# shows the traffic move. Exits non-zero if any row is wrong. About 3-5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[demo %s] %s\n' "$(date +%T)" "$*"; }
[ "$(id -u)" = 0 ] || { log "must run as root (qemu, apt-get)"; exit 1; }
command -v cargo >/dev/null || { log "cargo is missing: install the Rust toolchain"; exit 1; }
if ! command -v pkg-config >/dev/null; then
    log "apt-get install pkg-config"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pkg-config >/dev/null
fi
log "building l7mark (release)"
cargo build --release --bins
log "booting Debian 12's kernel with IPVS and running the demo (progress: integration/work/results/logs/90-demo.log)"
rc=0
integration/vm/run.sh 90-demo || rc=$?
log "--- the demo's output"
sed -n '/^== .*result/,$p' integration/work/results/logs/90-demo.log 2>/dev/null || true
if [ "$rc" = 0 ]; then log "PASS: every row as expected"; else log "FAIL (see integration/work/results/logs/90-demo.log)"; fi
exit "$rc"

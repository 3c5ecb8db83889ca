#!/usr/bin/env bash
# The one command that runs every l7mark test (README's test command; CI's .ci/run calls it).
#
#   integration/test-all.sh            everything: lint, unit/property tests, bounded fuzz,
#                                      host netns lab, the Debian 12 VM with real IPVS
#
# It installs what it needs (apt-get, cargo install) and fails — never skips — when a
# prerequisite can't be had. Must run as root (netns, nft, qemu). Prints one PASS/FAIL line per
# stage and a closing "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD

log() { printf '[test-all %s] %s\n' "$(date +%T)" "$*"; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, nft, NFQUEUE, qemu)"

# --- prerequisites ------------------------------------------------------------------------------
need=()
for pair in pkg-config:pkg-config nft:nftables ip:iproute2 iptables:iptables conntrack:conntrack \
            python3:python3 openssl:openssl curl:curl socat:socat \
            systemd-analyze:systemd; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || die "cannot install ${need[*]}"
fi
command -v cargo >/dev/null || die "cargo is missing (this project needs the Rust toolchain)"
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
cargo clippy --version >/dev/null 2>&1 || die "cargo clippy is not available"
cargo fmt --version >/dev/null 2>&1 || die "cargo fmt is not available"

# --- stages -------------------------------------------------------------------------------------
passed=0; failed=0; failed_names=()
stage() { # name command...
    local name=$1; shift
    local t0=$SECONDS
    log "=== $name"
    if "$@"; then
        passed=$((passed+1)); log "PASS $name ($((SECONDS-t0))s)"
    else
        failed=$((failed+1)); failed_names+=("$name"); log "FAIL $name ($((SECONDS-t0))s)"
    fi
}
locked=(); [ -f Cargo.lock ] && locked=(--locked)

stage "cargo fmt --check"        cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy "${locked[@]}" --all-targets -- -D warnings
stage "cargo test"               cargo test "${locked[@]}" --all-targets
stage "cargo test --doc"         cargo test "${locked[@]}" --doc
stage "cargo build --release"    cargo build "${locked[@]}" --release --bins
stage "fuzz (bounded)"           fuzz/run-bounded.sh "${L7MARK_FUZZ_SECS:-20}"
stage "netns lab (host kernel)"  integration/netns/run.sh
stage "VM suite (Debian 12 kernel, real IPVS)" integration/vm/run.sh

log "stages: ${passed} passed, ${failed} failed${failed_names[*]:+ (${failed_names[*]})}"
echo "${passed} passed, ${failed} failed"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# Bounded fuzzing of every l7mark protocol parser on the stable toolchain.
#
#   fuzz/run-bounded.sh [seconds-per-target]      (default 20)
#
# Installs cargo-fuzz if it is missing (cargo install --locked), builds all targets with
# libFuzzer + SanitizerCoverage instrumentation but no sanitizer (the only mode that works on a
# stable rustc, see README.md), seeds each corpus with tests/fixtures, and runs each target for
# the given time. Exits non-zero if the tool cannot be installed, a target does not build, or any
# target crashes, times out or runs out of memory; it never skips silently.
#
# Environment:
#   CARGO_TARGET_DIR   where to build (default: fuzz/target)
#   FUZZ_TARGETS       space-separated subset of targets (default: all of them)
#   FUZZ_JOBS_ARGS     extra libFuzzer arguments (e.g. "-workers=2 -jobs=2")
set -euo pipefail

SECS="${1:-20}"
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || [ "$SECS" -eq 0 ]; then
    echo "usage: $0 [seconds-per-target > 0]" >&2
    exit 2
fi

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
FIXTURES="$ROOT/tests/fixtures"
TARGET_DIR="${CARGO_TARGET_DIR:-$FUZZ_DIR/target}"
TARGETS=(${FUZZ_TARGETS:-ip http tls icp})
CARGO_FUZZ_VERSION="0.13.2"
LOGS="$FUZZ_DIR/logs"

die() {
    echo "run-bounded: $*" >&2
    exit 1
}

command -v cargo >/dev/null || die "cargo not found"
# libfuzzer-sys compiles libFuzzer (C++) from source.
command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null ||
    die "no C++ compiler: libfuzzer-sys needs one to build libFuzzer"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-bounded: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked ||
        die "cargo install cargo-fuzz failed"
    cargo fuzz --version >/dev/null 2>&1 || die "cargo-fuzz still not runnable after install"
fi
echo "run-bounded: $(cargo fuzz --version), $(rustc --version)" >&2

cd "$FUZZ_DIR"
# --sanitizer none: ASan needs -Zsanitizer (nightly). Safe Rust cannot corrupt memory, and the
# parsers forbid unsafe code, so panics (incl. failed invariant assertions, overflow checks with
# --debug-assertions) are what the fuzzer looks for.
FUZZ_FLAGS=(--sanitizer none --debug-assertions --target-dir "$TARGET_DIR")

echo "run-bounded: building ${TARGETS[*]}" >&2
for t in "${TARGETS[@]}"; do
    cargo fuzz build "${FUZZ_FLAGS[@]}" "$t" || die "build of fuzz target '$t' failed"
done

mkdir -p "$LOGS"
failed=()
for t in "${TARGETS[@]}"; do
    corpus="$FUZZ_DIR/corpus/$t"
    mkdir -p "$corpus"
    # Every fixture seeds every target: valid inputs of the other protocols are good negatives.
    for f in "$FIXTURES"/*.bin "$FIXTURES"/*.http; do
        [ -f "$f" ] || die "no fixtures in $FIXTURES"
        [ -e "$corpus/$(basename "$f")" ] || cp "$f" "$corpus/"
    done
    log="$LOGS/$t.log"
    echo "run-bounded: fuzzing '$t' for ${SECS}s (log: $log)" >&2
    # shellcheck disable=SC2086 # FUZZ_JOBS_ARGS is a word list on purpose
    if cargo fuzz run "${FUZZ_FLAGS[@]}" "$t" "$corpus" -- \
        -max_total_time="$SECS" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ${FUZZ_JOBS_ARGS:-} >"$log" 2>&1; then
        summary="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
        echo "run-bounded: $t ok: ${summary:-no DONE line}" >&2
        [ -n "$summary" ] || { echo "run-bounded: $t did not report its final stats" >&2; failed+=("$t"); }
    else
        echo "run-bounded: $t FAILED; tail of $log:" >&2
        tail -n 40 "$log" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    die "failing targets: ${failed[*]} (crash inputs in $FUZZ_DIR/artifacts/<target>/)"
fi
echo "run-bounded: all targets ran ${SECS}s without a crash" >&2

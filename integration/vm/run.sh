#!/bin/bash
# integration/vm/run.sh -- boot Debian 12's own kernel (linux-image-amd64) in qemu with a hand-built
# busybox initramfs and run the VM tests (integration/vm/tests/NN-name.sh) in ONE boot.
#
# usage: integration/vm/run.sh [TEST...]     TEST = file name without .sh, or its NN prefix;
#                                            no TEST = every test in integration/vm/tests
#        integration/vm/run.sh --list        list the tests
#        integration/vm/run.sh --shell       boot, bring the topology up, interactive shell (no test)
#
# Exit status 0 only if every selected test passed AND the guest reported completion.
# Must run as root. Installs what it needs with apt-get (only what is missing); never skips.
#
# Environment:
#   L7MARK_VM_WORK=DIR         work dir (default: <repo>/integration/work, gitignored): kernel cache,
#                              initramfs, console.log, results/
#   L7MARK_VM_TIMEOUT=900      seconds for the whole boot + tests; then qemu is killed -> FAIL
#   L7MARK_VM_TEST_TIMEOUT=300 seconds per test inside the guest
#   L7MARK_VM_KEEP=1           after the tests, an interactive shell on the console (no timeout)
#   L7MARK_VM_ACCEL=auto       auto|kvm|tcg; auto probes KVM and falls back to TCG
#   L7MARK_VM_MEM=1024 L7MARK_VM_SMP=2   guest RAM (MiB) and CPUs
#   L7MARK_VM_KPKG=linux-image-6.1.0-NN-amd64   kernel package (default: what linux-image-amd64 depends on)
#   L7MARK_GUEST_BINS="a b"    host binaries copied (with their ldd libraries) to /usr/local/bin in the
#                              guest; relative paths are relative to the repo. Default: l7mark and
#                              l7mark-testkit from ${CARGO_TARGET_DIR:-target}/release, each only if it
#                              exists. Named but missing -> error.
#   L7MARK_APT_NO_REMOVE=1     make apt-get refuse to remove packages
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib/host.sh
. "$REPO/integration/lib/host.sh"
set -E
trap 'log "ERROR: command failed at line $LINENO: $BASH_COMMAND"' ERR

WORK=${L7MARK_VM_WORK:-$REPO/integration/work}
TIMEOUT=${L7MARK_VM_TIMEOUT:-900}
TEST_TIMEOUT=${L7MARK_VM_TEST_TIMEOUT:-300}
KEEP=${L7MARK_VM_KEEP:-0}
ACCEL=${L7MARK_VM_ACCEL:-auto}
MEM=${L7MARK_VM_MEM:-1024}
SMP=${L7MARK_VM_SMP:-2}
KVM_BOOT_LIMIT=45          # auto mode: a KVM guest that has not reached /init by then -> TCG
TESTS_DIR=$HERE/tests
CONSOLE=$WORK/console.log
RESULTS=$WORK/results

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# ---------------------------------------------------------------------------------------------
# arguments -> list of test names
# ---------------------------------------------------------------------------------------------
all_tests() { for f in "$TESTS_DIR"/[0-9]*.sh; do [ -e "$f" ] && basename "$f" .sh; done; }
SELECTED=()
SHELL_ONLY=0
for a in "$@"; do
    case $a in
        -h|--help) usage; exit 0 ;;
        --list) all_tests; exit 0 ;;
        --shell) SHELL_ONLY=1; KEEP=1 ;;
        -*) die "unknown option $a (see --help)" ;;
        *)
            a=${a%.sh}; a=${a##*/}; found=0
            while read -r t; do
                if [ "$t" = "$a" ] || [ "${t%%-*}" = "$a" ]; then SELECTED+=("$t"); found=1; fi
            done < <(all_tests)
            [ "$found" = 1 ] || die "no test matches '$a' in $TESTS_DIR (--list shows them)"
            ;;
    esac
done
if [ "$SHELL_ONLY" = 0 ] && [ "${#SELECTED[@]}" = 0 ]; then
    mapfile -t SELECTED < <(all_tests)
    [ "${#SELECTED[@]}" -gt 0 ] || die "no tests in $TESTS_DIR"
fi

require_root
T_START=$(date +%s.%N)
mkdir -p "$WORK"
exec 9> "$WORK/.lock"
flock -n 9 || die "another integration/vm/run.sh is using $WORK (L7MARK_VM_WORK selects another)"

# ---------------------------------------------------------------------------------------------
# 1. host packages
# ---------------------------------------------------------------------------------------------
GUEST_TOOLS=(ip nft ipvsadm conntrack tcpdump keepalived openssl curl socat)
ensure_cmds qemu-system-x86_64:qemu-system-x86 busybox:busybox-static ipvsadm:ipvsadm nft:nftables \
    ip:iproute2 conntrack:conntrack tcpdump:tcpdump keepalived:keepalived openssl:openssl curl:curl \
    socat:socat dpkg-deb:dpkg ldd:libc-bin flock:util-linux apt-get:apt
BUSYBOX=/bin/busybox

# ---------------------------------------------------------------------------------------------
# 2. kernel: Debian's linux-image-amd64 dependency, downloaded and unpacked (never installed)
# ---------------------------------------------------------------------------------------------
KDIR=$WORK/kernel
mkdir -p "$KDIR"
resolve_kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
KPKG=${L7MARK_VM_KPKG:-}
if [ -z "$KPKG" ]; then
    KPKG=$(resolve_kpkg || true)
    if [ -z "$KPKG" ] || [ ! -e "$KDIR/$KPKG/.l7mark-ready" ]; then
        # apt lists missing or maybe stale: refresh once before deciding what to download
        if [ -z "$KPKG" ]; then apt_update_once; KPKG=$(resolve_kpkg || true); fi
    fi
    if [ -z "$KPKG" ]; then
        cached=$(printf '%s\n' "$KDIR"/linux-image-*/.l7mark-ready | grep -v '\*' | sort -V | tail -1 || true)
        [ -n "$cached" ] || die "cannot resolve the kernel package (apt-cache depends linux-image-amd64 is empty)"
        KPKG=$(basename "$(dirname "$cached")")
        log "apt cannot resolve linux-image-amd64; using the cached $KPKG"
    fi
fi
KROOT=$KDIR/$KPKG
if [ ! -e "$KROOT/.l7mark-ready" ]; then
    mkdir -p "$KDIR/debs"
    # (as root into a dir _apt cannot write, apt warns "Download is performed unsandboxed": harmless)
    dl() { (cd "$KDIR/debs" && { apt-get download -qq "$KPKG" 2>&1 | grep -v unsandboxed || true; }); }
    find_deb() { find "$KDIR/debs" -maxdepth 1 -name "${KPKG}_*.deb" | head -1; }
    deb=$(find_deb)
    if [ -z "$deb" ]; then
        log "apt-get download $KPKG (~70 MB)"
        dl
        deb=$(find_deb)
        if [ -z "$deb" ] && [ "$L7M_APT_UPDATED" = 0 ]; then apt_update_once; dl; deb=$(find_deb); fi
        [ -n "$deb" ] || die "apt-get download $KPKG failed"
    fi
    log "unpacking $(basename "$deb") into $KROOT"
    rm -rf "$KROOT" "$KROOT.tmp"; mkdir -p "$KROOT.tmp"
    dpkg-deb -x "$deb" "$KROOT.tmp"
    kv=$(find "$KROOT.tmp/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -1)
    if [ -z "$kv" ] || [ ! -f "$KROOT.tmp/boot/vmlinuz-$kv" ]; then die "$deb has no vmlinuz/modules"; fi
    # the .deb has no modules.dep (its postinst runs depmod) and the host may have no kmod
    "$BUSYBOX" depmod -b "$KROOT.tmp" "$kv"
    mv "$KROOT.tmp" "$KROOT"
    touch "$KROOT/.l7mark-ready"
    rm -f "$deb"
fi
KVER=$(find "$KROOT/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -1)
VMLINUZ=$KROOT/boot/vmlinuz-$KVER
KMOD=$KROOT/lib/modules/$KVER
log "kernel: $KPKG ($KVER)"

# ---------------------------------------------------------------------------------------------
# 3. initramfs = base (busybox, tools, modules; cached) + overlay (/init, cert, guest bins; every run)
# ---------------------------------------------------------------------------------------------
IDIR=$WORK/initramfs
mkdir -p "$IDIR"

copy_with_libs() { # ROOT SRC DST
    local root=$1 src=$2 dst=$3 lib
    mkdir -p "$root$(dirname "$dst")"
    install -m 0755 "$src" "$root$dst"
    { ldd "$src" 2>/dev/null || true; } | { grep -oE '/[^ ]+' || true; } | while read -r lib; do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
tool_paths() { local t; for t in "${GUEST_TOOLS[@]}"; do command -v "$t"; done; }
base_stamp() {
    {
        echo "$KPKG"; sha256sum "$0" | cut -c1-64
        for p in "$BUSYBOX" $(tool_paths); do
            stat -Lc '%n %s %Y' "$p"
            { ldd "$p" 2>/dev/null || true; } | { grep -oE '/[^ ]+' || true; } | xargs -r stat -Lc '%n %s %Y'
        done
    } | sha256sum | cut -c1-64
}

# uncompressed on purpose: under TCG the kernel needs ~6 s to gunzip a 60 MB initramfs
mkcpio() { # DIR OUT
    (cd "$1" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null > "$2.tmp")
    mv "$2.tmp" "$2"
}

build_base() {
    local R=$IDIR/base.root t a m want mods
    rm -rf "$R"; mkdir -p "$R"
    mkdir -p "$R"/{bin,lib,lib64,etc,proc,sys,dev,run,tmp,root,srv,var,mnt} "$R/usr/local/bin"
    ln -s bin "$R/sbin"; ln -s ../bin "$R/usr/bin"; ln -s ../bin "$R/usr/sbin"; ln -s ../lib "$R/usr/lib"
    ln -s ../run "$R/var/run"; ln -s ../tmp "$R/var/tmp"
    for t in "${GUEST_TOOLS[@]}"; do copy_with_libs "$R" "$(command -v "$t")" "/bin/$t"; done
    copy_with_libs "$R" "$BUSYBOX" /bin/busybox
    for a in $("$BUSYBOX" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
    # kernel modules: netfilter (incl. IPVS), veth, dummy, tunnels, virtio/9p, crc32c + dependencies
    want=$(cd "$KMOD" && { find kernel/net/netfilter kernel/net/ipv4/netfilter kernel/net/ipv6/netfilter -name '*.ko*'
            find kernel \( -name 'veth.ko*' -o -name 'dummy.ko*' -o -name 'virtio*.ko*' -o -name '9p*.ko*' \
                -o -name 'crc32c*.ko*' -o -name 'libcrc32c.ko*' -o -name 'ipip.ko*' -o -name 'ip6_tunnel.ko*' \) ; })
    mods=$(for m in $want; do echo "$m"; awk -v m="$m:" '$1 == m {for (i = 2; i <= NF; i++) print $i}' "$KMOD/modules.dep"; done | sort -u)
    for m in $mods; do
        mkdir -p "$R/lib/modules/$KVER/$(dirname "$m")"
        cp "$KMOD/$m" "$R/lib/modules/$KVER/$m"
    done
    cp "$KMOD"/modules.order "$KMOD"/modules.builtin "$KMOD"/modules.builtin.modinfo "$R/lib/modules/$KVER/" 2>/dev/null || true
    "$BUSYBOX" depmod -b "$R" "$KVER"
    # users/groups (tcpdump drops privileges to "tcpdump"), name databases, openssl config
    printf 'root:x:0:0:root:/root:/bin/sh\ntcpdump:x:0:0:tcpdump:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$R/etc/passwd"
    printf 'root:x:0:\ntcpdump:x:0:\nnogroup:x:65534:\n' > "$R/etc/group"
    printf '127.0.0.1 localhost l7mark-vm\n::1 localhost\n' > "$R/etc/hosts"
    for f in /etc/protocols /etc/services /etc/ssl/openssl.cnf; do
        [ -f "$f" ] && { mkdir -p "$R$(dirname "$f")"; cp -L "$f" "$R$f"; }
    done
    mkdir -p "$R/usr/lib/ssl" 2>/dev/null || true
    [ -f "$R/etc/ssl/openssl.cnf" ] && ln -sf /etc/ssl/openssl.cnf "$R/lib/ssl/openssl.cnf"
    log "initramfs base: $(echo "$mods" | wc -l) kernel modules, $(du -sh "$R" | cut -f1) unpacked"
    mkcpio "$R" "$IDIR/base.cpio"
}

stamp=$(base_stamp)
if [ ! -s "$IDIR/base.cpio" ] || [ "$(cat "$IDIR/base.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "building the initramfs base"
    build_base
    echo "$stamp" > "$IDIR/base.stamp"
else
    log "initramfs base: cached ($IDIR/base.cpio)"
fi

# self-signed test certificate (cached): rs_tls_start in the guest uses it
TLS=$WORK/tls
if [ ! -s "$TLS/cert.pem" ] || [ ! -s "$TLS/key.pem" ]; then
    mkdir -p "$TLS"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=l7mark-test" -keyout "$TLS/key.pem" -out "$TLS/cert.pem" \
        -addext "subjectAltName=DNS:l7mark.test,DNS:*.example,IP:10.0.0.100,IP:10.0.2.2,IP:10.0.3.2,IP:10.0.4.2" \
        2>/dev/null || die "openssl could not create the test certificate"
fi

# guest binaries (host-built): explicit list must exist; default list is optional
if [ -n "${L7MARK_GUEST_BINS+x}" ]; then
    read -r -a GBINS <<< "$L7MARK_GUEST_BINS"; GBINS_EXPLICIT=1
else
    tdir=${CARGO_TARGET_DIR:-$REPO/target}
    GBINS=("$tdir/release/l7mark" "$tdir/release/l7mark-testkit"); GBINS_EXPLICIT=0
fi
O=$IDIR/overlay.root
rm -rf "$O"; mkdir -p "$O/etc/l7mark-test/tls" "$O/usr/local/bin"
install -m 0755 "$HERE/guest/init" "$O/init"
cp "$TLS/cert.pem" "$TLS/key.pem" "$O/etc/l7mark-test/tls/"
included=()
for b in "${GBINS[@]}"; do
    case $b in /*) p=$b ;; *) p=$REPO/$b ;; esac
    if [ ! -f "$p" ]; then
        [ "$GBINS_EXPLICIT" = 1 ] && die "L7MARK_GUEST_BINS names $b, which does not exist"
        continue
    fi
    copy_with_libs "$O" "$p" "/usr/local/bin/$(basename "$p")"
    included+=("$(basename "$p")")
done
log "guest binaries in /usr/local/bin: ${included[*]:-(none; tests that need l7mark will FAIL)}"
mkcpio "$O" "$IDIR/overlay.cpio"
cat "$IDIR/base.cpio" "$IDIR/overlay.cpio" > "$IDIR/initrd.cpio"

# ---------------------------------------------------------------------------------------------
# 4. boot
# ---------------------------------------------------------------------------------------------
rm -rf "$RESULTS"; mkdir -p "$RESULTS/logs"
{
    printf 'L7M_TESTS="%s"\n' "${SELECTED[*]:-}"
    printf 'L7M_KEEP=%s\nL7M_TEST_TIMEOUT=%s\n' "$KEEP" "$TEST_TIMEOUT"
} > "$RESULTS/run.conf"

kvm_usable() {
    echo "no /dev/kvm" > "$WORK/kvm-probe.err"
    [ -c /dev/kvm ] || return 1
    # paused qemu (-S) stays up if KVM with "-cpu host" initialises, and exits at once otherwise
    # (in a subshell, so that bash does not report the aborted qemu as a job)
    (
        timeout 20 qemu-system-x86_64 -enable-kvm -cpu host -m 64 -display none -nodefaults -no-user-config \
            -S -monitor none -serial none 2> "$WORK/kvm-probe.err" &
        p=$!
        sleep 2
        if kill -0 "$p" 2>/dev/null; then kill "$p"; wait "$p" 2>/dev/null; exit 0; fi
        wait "$p" 2>/dev/null
        exit 1
    ) 2>/dev/null
}

QEMU_PID=""
# shellcheck disable=SC2317  # trap handler
cleanup() { [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null; return 0; }
trap cleanup EXIT INT TERM

BOOT_RESULT=""      # ok | timeout | noinit | exit
boot() { # ACCEL(kvm|tcg)
    local acc=$1 args=() t0 now printed=0 rc=0 n
    case $acc in
        kvm) args=(-enable-kvm -cpu host) ;;
        tcg) args=(-accel tcg -cpu max) ;;
    esac
    args+=(-m "$MEM" -smp "$SMP" -nodefaults -no-user-config -display none -no-reboot -nic none
        -kernel "$VMLINUZ" -initrd "$IDIR/initrd.cpio"
        -append "console=ttyS0 panic=-1 quiet loglevel=4"
        -virtfs "local,path=$REPO,mount_tag=l7mark,security_model=none,readonly=on,id=l7mark"
        -virtfs "local,path=$RESULTS,mount_tag=results,security_model=none,id=results")
    rm -f "$RESULTS/done" "$RESULTS/results.txt"
    : > "$CONSOLE"
    log "booting ($acc, ${SMP} CPUs, ${MEM} MiB): ${#SELECTED[@]} test(s); console: $CONSOLE"
    t0=$(date +%s)
    if [ "$KEEP" = 1 ]; then
        log "L7MARK_VM_KEEP=1: console attached here; Ctrl-A x quits qemu"
        qemu-system-x86_64 "${args[@]}" \
            -chardev "stdio,id=con0,mux=on,signal=off,logfile=$CONSOLE" -serial chardev:con0 \
            -mon chardev=con0,mode=readline || rc=$?
        BOOT_RESULT="exit"; [ -f "$RESULTS/done" ] && BOOT_RESULT=ok
        BOOT_SECS=$(( $(date +%s) - t0 ))
        return
    fi
    qemu-system-x86_64 "${args[@]}" -serial "file:$CONSOLE" < /dev/null > "$WORK/qemu.log" 2>&1 &
    QEMU_PID=$!
    while :; do
        sleep 1
        # live progress: the guest's TEST result lines and errors
        n=$(wc -l < "$CONSOLE")
        if [ "$n" -gt "$printed" ]; then
            sed -n "$((printed + 1)),${n}p" "$CONSOLE" | tr -d '\r' | grep -E '^(TEST |L7MARK-GUEST-ERROR)' || true
            printed=$n
        fi
        now=$(date +%s)
        if ! kill -0 "$QEMU_PID" 2>/dev/null; then
            wait "$QEMU_PID" || rc=$?
            QEMU_PID=""
            BOOT_RESULT="exit"; [ -f "$RESULTS/done" ] && BOOT_RESULT=ok
            [ "$rc" = 0 ] || log "qemu exited with status $rc: $(tail -3 "$WORK/qemu.log" | tr '\n' ' ')"
            break
        fi
        if [ "$acc" = kvm ] && [ "$ACCEL" = auto ] && [ $((now - t0)) -ge "$KVM_BOOT_LIMIT" ] \
            && ! grep -q L7MARK-GUEST-INIT "$CONSOLE"; then
            kill "$QEMU_PID"; wait "$QEMU_PID" 2>/dev/null || true; QEMU_PID=""
            BOOT_RESULT=noinit; break
        fi
        if [ $((now - t0)) -ge "$TIMEOUT" ]; then
            log "TIMEOUT: guest still running after ${TIMEOUT}s (L7MARK_VM_TIMEOUT); killing qemu"
            kill "$QEMU_PID"; wait "$QEMU_PID" 2>/dev/null || true; QEMU_PID=""
            BOOT_RESULT=timeout; break
        fi
    done
    BOOT_SECS=$(( $(date +%s) - t0 ))
}

USED=$ACCEL
case $ACCEL in
    auto)
        if kvm_usable; then
            USED=kvm; boot kvm
            if [ "$BOOT_RESULT" = noinit ]; then
                log "KVM guest did not reach /init within ${KVM_BOOT_LIMIT}s; falling back to TCG"
                USED=tcg; boot tcg
            fi
        else
            log "KVM not usable ($(tr '\n' ' ' < "$WORK/kvm-probe.err" | cut -c1-160)); using TCG"
            USED=tcg; boot tcg
        fi ;;
    kvm|tcg) boot "$ACCEL" ;;
    *) die "L7MARK_VM_ACCEL must be auto, kvm or tcg" ;;
esac

# ---------------------------------------------------------------------------------------------
# 5. verdict
# ---------------------------------------------------------------------------------------------
strip() { sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\r$//'; }   # filter: ANSI escapes and CRs off
npass=0; nfail=0; failed=()
echo
echo "----- results"
for t in "${SELECTED[@]}"; do
    line=$(grep -E "^TEST $t: " "$RESULTS/results.txt" 2>/dev/null | tail -1 || true)
    if [ -z "$line" ]; then
        if [ -s "$RESULTS/logs/$t.log" ]; then line="TEST $t: FAIL (interrupted: guest $BOOT_RESULT during the test)"
        else line="TEST $t: FAIL (not run: guest $BOOT_RESULT before reaching it)"; fi
    fi
    echo "$line"
    case $line in *": PASS "*) npass=$((npass + 1)) ;; *) nfail=$((nfail + 1)); failed+=("$t") ;; esac
done
ok=1
[ "$nfail" = 0 ] || ok=0
if [ "$BOOT_RESULT" != ok ]; then
    ok=0
    log "the guest did not report completion ($BOOT_RESULT)"
    grep -a -m1 -A20 'Kernel panic' "$CONSOLE" | strip || true
    echo "----- last 40 console lines ($CONSOLE):"
    tail -n 40 "$CONSOLE" | strip
fi
for t in "${failed[@]}"; do
    [ -f "$RESULTS/logs/$t.log" ] || continue
    echo "----- $t: last 40 log lines ($RESULTS/logs/$t.log):"
    tail -n 40 "$RESULTS/logs/$t.log"
done
total=$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b - a}')
trap - ERR
echo
echo "SUMMARY: ${npass} passed, ${nfail} failed of ${#SELECTED[@]}; guest $BOOT_RESULT ($USED, boot+tests ${BOOT_SECS}s, script ${total}s)"
echo "         console: $CONSOLE   logs: $RESULTS/logs/"
[ "$ok" = 1 ] && exit 0
exit 1

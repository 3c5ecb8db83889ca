# shellcheck shell=bash
# integration/lib/host.sh -- host-side helpers for integration/vm/run.sh and integration/netns/run.sh.
# Sourced by bash scripts; not for the guest.
#
#   log MSG...            timestamped line on stderr
#   die MSG...            log + exit 1
#   require_root
#   ensure_cmds CMD:PKG...  install (apt-get) the packages whose command is missing; fail if still missing
#
# apt behaviour (all observed on Debian 12 images):
#   * `apt-get update` runs at most once per script run, and only if something must be installed
#     or downloaded.
#   * Packages apt would REMOVE are logged before installing (installing bookworm's qemu-system-x86
#     removes a preinstalled backports qemu-utils, for example). L7MARK_APT_NO_REMOVE=1 makes apt refuse.
#   * The install is retried once: Docker-style images have /etc/apt/apt.conf.d/docker-clean, which
#     deletes downloaded .debs after every dpkg run; when apt needs two dpkg runs (remove, then
#     install) the second one fails with "cannot access archive" and a plain retry succeeds.

log() { printf '[host %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (apt-get, network namespaces, qemu)"
}

L7M_APT_UPDATED=0
apt_update_once() {
    [ "$L7M_APT_UPDATED" = 1 ] && return 0
    log "apt-get update"
    apt-get update -qq >/dev/null || { log "apt-get update failed; retrying once"; sleep 2; apt-get update -qq >/dev/null; } \
        || die "apt-get update failed (no network or broken sources?)"
    L7M_APT_UPDATED=1
}

apt_install() { # PKG...
    local remv nr=()
    command -v apt-get >/dev/null || die "apt-get not found: install these packages by hand: $*"
    apt_update_once
    remv=$(apt-get -s install --no-install-recommends "$@" 2>/dev/null | awk '/^Remv /{print $2}' | tr '\n' ' ' || true)
    if [ -n "$remv" ]; then
        log "WARNING: installing $* makes apt-get REMOVE: $remv"
        [ "${L7MARK_APT_NO_REMOVE:-0}" = 1 ] && nr=(--no-remove)
    fi
    log "apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${nr[@]}" "$@" >/dev/null; then
        log "apt-get install failed; retrying once"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${nr[@]}" "$@" >/dev/null \
            || die "apt-get install $* failed twice"
    fi
}

# A static busybox with the httpd applet (package busybox-static) at /bin/busybox.
busybox_ok() {
    [ -x /bin/busybox ] || return 1
    # no "grep -q": with pipefail, busybox may be killed by SIGPIPE and the check fails at random
    /bin/busybox --list 2>/dev/null | grep -x httpd >/dev/null || return 1
    ! ldd /bin/busybox >/dev/null 2>&1     # ldd fails on a static binary
}

ensure_cmds() { # CMD:PKG ...   (CMD "busybox" means: busybox_ok)
    local spec cmd pkg missing=() pkgs=()
    for spec in "$@"; do
        cmd=${spec%%:*}; pkg=${spec#*:}
        if [ "$cmd" = busybox ]; then busybox_ok && continue
        else command -v "$cmd" >/dev/null 2>&1 && continue; fi
        missing+=("$cmd"); pkgs+=("$pkg")
    done
    [ "${#pkgs[@]}" = 0 ] && return 0
    log "missing: ${missing[*]}"
    # shellcheck disable=SC2046  # word splitting intended (package names)
    apt_install $(printf '%s\n' "${pkgs[@]}" | sort -u)
    for spec in "$@"; do
        cmd=${spec%%:*}; pkg=${spec#*:}
        if [ "$cmd" = busybox ]; then busybox_ok || die "package $pkg did not provide a static /bin/busybox with httpd"
        else command -v "$cmd" >/dev/null 2>&1 || die "package $pkg did not provide the command '$cmd'"; fi
    done
}

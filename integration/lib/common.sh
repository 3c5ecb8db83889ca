# shellcheck shell=sh
# integration/lib/common.sh -- assertion helpers shared by the VM tests (busybox sh in the guest)
# and the netns tests (dash on the host). POSIX sh only: no arrays, no pipefail, no bash-isms.
# Sourced through integration/vm/lib.sh or integration/netns/lib.sh, never on its own.
#
#   step TEXT          section header in the log
#   ok TEXT            record a passed check
#   fail TEXT          record a failed check and go on (the test fails at exit)
#   fatal TEXT         record a failed check and stop the test now
#   check TEXT CMD...  ok/fail depending on CMD's exit status
#   run CMD...         print "+ CMD" and run it
#   wait_for SECS CMD...   poll CMD every 0.2 s until it succeeds; 1 on timeout
#   expect_eq TEXT GOT WANT     ok if GOT = WANT (strings)
#   expect_ge TEXT GOT MIN      ok if the integer GOT >= MIN
#   count_words WORD LIST       how often WORD occurs in the space-separated LIST
#   distinct LIST               number of distinct words in LIST
#
# At exit (EXIT trap) the test's status is decided: 1 if any check failed, the shell's own status
# if it was non-zero, 1 if no check ran at all (a test must assert something), else 0.

L7M_OKS=0
L7M_FAILS=0
L7M_FAILED_LIST=""

_l7m_centis() { # uptime in centiseconds, without forking
    read -r _l7m_up _l7m_idle < /proc/uptime
    _l7m_s=${_l7m_up%.*}; _l7m_f=${_l7m_up#*.}
    echo $(( _l7m_s * 100 + ${_l7m_f#0} ))
}
L7M_T0=$(_l7m_centis)
_l7m_elapsed() {
    _l7m_d=$(( $(_l7m_centis) - L7M_T0 ))
    printf '%d.%02d' $(( _l7m_d / 100 )) $(( _l7m_d % 100 ))
}

step()  { printf '\n== [+%ss] %s\n' "$(_l7m_elapsed)" "$*"; }
ok()    { L7M_OKS=$((L7M_OKS + 1)); printf 'ok:   %s\n' "$*"; }
fail()  {
    L7M_FAILS=$((L7M_FAILS + 1)); printf 'FAIL: %s\n' "$*"
    L7M_FAILED_LIST="$L7M_FAILED_LIST
  - $*"
}
fatal() { fail "$*"; exit 1; }
check() { _l7m_desc=$1; shift; if "$@"; then ok "$_l7m_desc"; else fail "$_l7m_desc"; fi; }
run()   { printf '+ %s\n' "$*"; "$@"; }

wait_for() { # SECS CMD...
    _l7m_end=$(( $(_l7m_centis) + $1 * 100 )); shift
    while :; do
        "$@" && return 0
        [ "$(_l7m_centis)" -ge "$_l7m_end" ] && return 1
        sleep 0.2
    done
}

expect_eq() { # TEXT GOT WANT
    if [ "$2" = "$3" ]; then ok "$1 ($2)"; else fail "$1: got '$2', want '$3'"; fi
}
expect_ge() { # TEXT GOT MIN
    case $2 in ''|*[!0-9]*) fail "$1: got '$2', not a number"; return ;; esac
    if [ "$2" -ge "$3" ]; then ok "$1 ($2 >= $3)"; else fail "$1: got $2, want >= $3"; fi
}
count_words() { # WORD LIST
    _l7m_n=0
    for _l7m_w in $2; do [ "$_l7m_w" = "$1" ] && _l7m_n=$((_l7m_n + 1)); done
    echo "$_l7m_n"
}
distinct() { # LIST
    # shellcheck disable=SC2086  # split the list into words
    printf '%s\n' $1 | sort -u | grep -c .
}

_l7m_exit() {
    _l7m_rc=$1
    trap - EXIT
    if [ "$L7M_FAILS" -gt 0 ]; then
        printf '\nRESULT: %d check(s) failed:%s\n' "$L7M_FAILS" "$L7M_FAILED_LIST"; exit 1
    fi
    if [ "$_l7m_rc" -ne 0 ]; then printf '\nRESULT: test script exited with status %d\n' "$_l7m_rc"; exit "$_l7m_rc"; fi
    if [ "$L7M_OKS" -eq 0 ]; then printf '\nRESULT: no check ran (a test must assert something)\n'; exit 1; fi
    printf '\nRESULT: all %d checks passed\n' "$L7M_OKS"; exit 0
}
trap '_l7m_exit $?' EXIT

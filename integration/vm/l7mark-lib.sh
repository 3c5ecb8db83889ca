# shellcheck shell=sh
# integration/vm/l7mark-lib.sh -- helpers for the VM tests that run l7mark itself (sourced after
# lib.sh). Everything runs inside the guest (busybox sh).
#
#   l7mark_start CONFIG       start the daemon (log $L7M_RUN/l7mark.log), wait until its queues are
#                             bound (and its nft table exists when it manages nft)
#   l7mark_stop               SIGTERM and wait (clean stop)
#   l7mark_kill               SIGKILL (crash)
#   l7mark_metric NAME        GET /metrics: the sum of the samples of NAME (all workers)
#   icp_caches_up             ICP responders on rs1..rs3 (VIP on lo, DR), replies carry their address
#   icp_ipvs_services         OPS+DR UDP fwmark services 100/120 -> rs1, 121 -> rs2, 122 -> rs3
#   icp_rules / icp_config    the rules document and l7mark.toml for the ICP tests (stdout)
#   icp_urls N                N cache URLs (plus one for the default rule)
#   icp_expected RULES URL... "url owner-ip" per URL, from l7mark explain
#   icp_misrouted EXP REPLIES how many replies came from another cache than the owner

L7MARK_PID=$L7M_RUN/l7mark.pid
L7MARK_LOG=$L7M_RUN/l7mark.log

_l7mark_ready() { # CONFIG
    _n=$(grep -c . /proc/net/netfilter/nfnetlink_queue 2>/dev/null)
    [ "${_n:-0}" -gt 0 ] || return 1
    grep -q '^manage = false' "$1" && return 0
    nft list table inet l7mark >/dev/null 2>&1
}
l7mark_start() {
    bg_start "$L7MARK_PID" "$L7MARK_LOG" l7mark run --config "$1"
    if ! wait_for 15 _l7mark_ready "$1"; then
        echo "--- l7mark log"; cat "$L7MARK_LOG"
        return 1
    fi
}
l7mark_stop() { bg_stop "$L7MARK_PID"; }
l7mark_kill() {
    [ -f "$L7MARK_PID" ] && kill -9 "$(cat "$L7MARK_PID")" 2>/dev/null
    rm -f "$L7MARK_PID"
    wait_for 5 sh -c '! grep -q . /proc/net/netfilter/nfnetlink_queue'
}
l7mark_metric() {
    curl -s --max-time 3 http://127.0.0.1:9180/metrics | awk -v n="$1" '
        # the sum over every sample of that name (per-worker series), or nothing if absent
        index($0, n) == 1 && (substr($0, length(n) + 1, 1) ~ /[{ ]/ || n ~ /}$/) {s += $NF; f = 1}
        END {if (f) print s}'
}
_metric_ge() { _v=$(l7mark_metric "$1"); [ -n "$_v" ] && [ "${_v%.*}" -ge "$2" ]; }
# l7mark_metric_wait NAME MIN: wait (3 s) until the sum reaches MIN (binder gauges lag 200 ms); print it
l7mark_metric_wait() { wait_for 3 _metric_ge "$1" "$2"; l7mark_metric "$1"; }

icp_caches_up() {
    step "caches: ICP responders on rs1..rs3 own the VIP $VIP_L7 (DR)"
    for _r in $RS_ALL; do
        rs_exec "$_r" ip addr add "$VIP_L7/32" dev lo || fail "VIP on $_r"
        rs_exec "$_r" sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 >/dev/null
        sysctl -q -w "net.ipv4.conf.$(rs_if "$_r").accept_local=1" >/dev/null
        bg_start "$L7M_RUN/$_r-icp.pid" "$L7M_RUN/$_r-icp.log" \
            "$L7M_IP" netns exec "$(rs_ns "$_r")" l7mark-testkit icp-server --listen "$VIP_L7:3130" \
            --name "$_r" --sender "$(rs_ip "$_r")"
    done
    for _r in $RS_ALL; do
        wait_for 5 grep -q listening "$L7M_RUN/$_r-icp.log" || fail "icp server on $_r did not start"
    done
}

icp_ipvs_services() {
    step "IPVS: one-packet-scheduling UDP fwmark services, DR"
    cat > icp-ipvs.conf <<EOF
service 100 udp dr rr ops
    real $RS1_IP
service 120 udp dr rr ops
    real $RS1_IP
service 121 udp dr rr ops
    real $RS2_IP
service 122 udp dr rr ops
    real $RS3_IP
EOF
    run "$L7MARK_IPVS" apply icp-ipvs.conf || fatal "ipvs services"
}

icp_rules() {
    cat <<EOF
{ "default_mark": 100,
  "rules": [
    {"id": "nocache", "icp": true, "host": "*.nocache.example", "mark": 100},
    {"id": "cache", "icp": true, "url_hash": {"marks": [120, 121, 122],
       "members": ["cache1.example.net", "cache2.example.net", "cache3.example.net"]}} ] }
EOF
}

icp_config() { # [extra TOML appended]
    cat <<EOF
rules_file = "/tmp/l7m-test/rules.json"
[marks]
min = 100
max = 999
[[service]]
name = "icp"
vip = "$VIP_L7"
port = 3130
proto = "icp"
forwarding = "dr"
[queues]
base = 100
workers = 2
max_len = ${ICP_QUEUE_MAXLEN:-4096}
[api]
listen = "127.0.0.1:9180"
EOF
}

icp_urls() {
    _i=1; _u=""
    while [ "$_i" -le "$1" ]; do _u="$_u http://cdn.example.net/obj/$_i.jpg"; _i=$((_i + 1)); done
    echo "$_u http://www.nocache.example/x"
}

icp_expected() { # RULES URL...
    _rules=$1; shift
    for _u in "$@"; do
        l7mark-testkit icp-encode "$_u" > /tmp/l7m-test/q.bin
        _m=$(l7mark explain --rules "$_rules" --proto icp --payload /tmp/l7m-test/q.bin \
            | sed 's/.*"mark":\([0-9]*\).*/\1/')
        case $_m in 100|120) _c=$RS1_IP ;; 121) _c=$RS2_IP ;; 122) _c=$RS3_IP ;; *) _c=bad-mark-$_m ;; esac
        echo "$_u $_c"
    done
}

icp_misrouted() { # EXPECTED REPLIES
    _bad=0
    while read -r _u _c; do
        _got=$(awk -v u="$_u" '$1 == "REPLY" && $2 == u {print $NF}' "$2")
        if [ "$_got" != "$_c" ]; then
            echo "MISROUTED $_u: answered by '$_got', owner $_c" >&2
            _bad=$((_bad + 1))
        fi
    done < "$1"
    echo "$_bad"
}

# ---- TCP delayed binding (HTTP, TLS) ------------------------------------------------------------
#   binder_setup [HOLD_POLICY]  sysctls, testkit HTTP servers (rsN:80 "rsN", rsN:8080 "rsN-8080";
#                               rs1/rs2 get extra addresses .12/.13 for c/d), TLS s_server on rs3:443 and
#                               rs2:443, a raw sink on rs2:4443, the IPVS NAT services and the
#                               rules below, l7mark running (HTTP on VIP:80, TLS on VIP:443)
#   load HOST N C EXPECT [ARGS] http-load from the client through the VIP
#   tls_get SNI                 curl over TLS with that SNI to the VIP; prints the body
binder_rules() {
    cat <<EOF
{ "default_mark": 100,
  "rules": [
    {"id": "img", "host": "static.example.com", "path_prefix": "/img/", "mark": 112},
    {"id": "a", "host": "a.example", "mark": 110},
    {"id": "b", "host": "b.example", "mark": 111},
    {"id": "c", "host": "c.example", "mark": 115},
    {"id": "d", "host": "d.example", "mark": 116},
    {"id": "tls-secure", "sni": "secure.example.com", "mark": 113},
    {"id": "tls-pq", "sni": "*.pq-example.com", "mark": 117},
    {"id": "tls-other", "sni": "*.example.com", "mark": 114} ] }
EOF
}

binder_config() { # HOLD_POLICY
    cat <<EOF
rules_file = "/tmp/l7m-test/rules.json"
[marks]
min = 100
max = 999
[[service]]
name = "web"
vip = "$VIP_L7"
port = 80
proto = "http"
[[service]]
name = "web-tls"
vip = "$VIP_L7"
port = 443
proto = "tls"
[queues]
base = 100
workers = 2
[api]
listen = "127.0.0.1:9180"
[binder]
hold_timeout_ms = 3000
on_hold_timeout = "${1:-default}"
EOF
}

_tk_server() { # rsN PORT NAME
    bg_start "$L7M_RUN/$1-tk-$2.pid" "$L7M_RUN/$1-tk-$2.log" \
        "$L7M_IP" netns exec "$(rs_ns "$1")" l7mark-testkit http-server --listen "0.0.0.0:$2" --name "$3"
}

binder_setup() {
    step "binder setup: sysctls, real servers, IPVS NAT fwmark services, l7mark"
    sysctl -q -w net.ipv4.vs.conntrack=1 net.netfilter.nf_conntrack_tcp_loose=0 >/dev/null \
        || fatal "sysctls"
    for _r in $RS_ALL; do
        rs_http_stop "$_r" 80; rs_http_stop "$_r" 8080
        _tk_server "$_r" 80 "$_r"
        _tk_server "$_r" 8080 "$_r-8080"
    done
    # L7 marks are never persistent: a persistent connection entry is "controlled" and IPVS will
    # not reschedule it when a client reuses its port (ip_vs_core.c is_new_conn_expected), so a
    # new connection of another class would meet the old class's real server. Affinity per class
    # comes from the source-hash scheduler (sh), which IPVS reschedules safely.
    # c/d use port 80 on extra real-server addresses (distinct from 110/111's: conntrack).
    rs_exec rs1 ip addr add 10.0.2.12/24 dev eth0; rs_exec rs1 ip addr add 10.0.2.13/24 dev eth0
    rs_exec rs2 ip addr add 10.0.3.12/24 dev eth0; rs_exec rs2 ip addr add 10.0.3.13/24 dev eth0
    bg_start "$L7M_RUN/rs2-sink.pid" "$L7M_RUN/rs2-sink.log" \
        "$L7M_IP" netns exec "$(rs_ns rs2)" l7mark-testkit tcp-sink --listen 0.0.0.0:4443 --name rs2-sink
    rs_tls_start rs3 443 || fail "TLS server rs3"
    rs_tls_start rs2 443 || fail "TLS server rs2"
    cat > binder-ipvs.conf <<EOF
service 100 tcp nat rr
    real $RS1_IP:8080
service 110 tcp nat rr
    real $RS1_IP:80
service 111 tcp nat rr
    real $RS2_IP:80
service 112 tcp nat rr
    real $RS3_IP:80
service 113 tcp nat rr
    real $RS3_IP:443
service 114 tcp nat rr
    real $RS2_IP:443
service 115 tcp nat sh
    real 10.0.2.12:80
    real 10.0.3.12:80
service 116 tcp nat sh
    real 10.0.3.13:80
    real 10.0.2.13:80
service 117 tcp nat rr
    real $RS2_IP:4443
EOF
    run "$L7MARK_IPVS" apply binder-ipvs.conf || fatal "ipvs services"
    binder_rules > rules.json
    binder_config "${1:-default}" > l7mark.toml
    l7mark check --config l7mark.toml || fatal "l7mark check"
    l7mark_start l7mark.toml || fatal "l7mark did not start"
}

load() { # HOST N C EXPECT [ARGS...]
    _h=$1; _n=$2; _c=$3; _e=$4; shift 4
    client_exec l7mark-testkit http-load --to "$VIP_L7:80" --host "$_h" --n "$_n" --concurrency "$_c" \
        ${_e:+--expect "$_e"} "$@"
}

tls_get() { # SNI
    client_exec curl -sk --max-time 10 --resolve "$1:443:$VIP_L7" "https://$1/index.html"
}

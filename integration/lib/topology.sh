# shellcheck shell=sh
# shellcheck disable=SC2034  # constants for the tests that source this file
# integration/lib/topology.sh -- the test topology, shared by the VM suite (director = the guest's
# root netns) and the host netns lab (director = netns "l7m-dir"). POSIX sh (busybox sh / dash).
#
# The including library sets, before sourcing this file:
#   L7M_PFX      netns name prefix ("" in the VM, "l7m-" on the host)
#   L7M_DIR_NS   netns of the director ("" = the current netns, i.e. the guest's root netns)
#   L7M_IP       path of iproute2's ip (busybox sh would otherwise run its own "ip" applet)
#   L7M_RUN      scratch dir for docroots, pid files and server logs
#   L7M_TLS_DIR  dir holding cert.pem/key.pem (self-signed) for rs_tls_start
#   L7M_BUSYBOX  path of a busybox with httpd and wget
#   L7M_TOPO_KILL  1 (default): topo_down kills the processes in our namespaces first
#
#                 client netns                     director                        rsN netns (N=1..3)
#   eth0 10.0.1.2/24 10.0.1.3/24  ----veth----  c0 10.0.1.1/24                   eth0 10.0.N+1.2/24
#        fd00:1::2/64 fd00:1::3/64                 fd00:1::1/64                       fd00:N+1::2/64
#   default via 10.0.1.1 / fd00:1::1            lo: 10.0.0.100 (L7 VIP)          default via 10.0.N+1.1 / fd00:N+1::1
#                                                   10.0.0.101 (L4 VIP)          httpd :80 and :8080 answer "rsN"
#                                                   fd00::100, fd00::101
#                                               rN 10.0.N+1.1/24 fd00:N+1::1/64 ----veth---- eth0 (in rsN)
#                                               ip_forward=1, ipv6 forwarding=1

# ---- names and addresses --------------------------------------------------------------------
NS_CLIENT=${L7M_PFX}client
NS_RS1=${L7M_PFX}rs1
NS_RS2=${L7M_PFX}rs2
NS_RS3=${L7M_PFX}rs3
RS_ALL="rs1 rs2 rs3"

CLIENT_IP=10.0.1.2
CLIENT_IP2=10.0.1.3
CLIENT_GW=10.0.1.1
CLIENT_IP6=fd00:1::2
CLIENT_IP6_2=fd00:1::3
CLIENT_GW6=fd00:1::1
VIP_L7=10.0.0.100
VIP_L4=10.0.0.101
VIP6=fd00::100
VIP6_L4=fd00::101
RS1_IP=10.0.2.2
RS2_IP=10.0.3.2
RS3_IP=10.0.4.2
RS1_IP6=fd00:2::2
RS2_IP6=fd00:3::2
RS3_IP6=fd00:4::2
DIR_IF_CLIENT=c0          # director side of the client link; rsN's link is "rN"
RS_HTTP_PORTS="80 8080"

# ---- command wrappers -------------------------------------------------------------------------
ip()          { "$L7M_IP" "$@"; }
nsx()         { _nsx_ns=$1; shift; "$L7M_IP" netns exec "$_nsx_ns" "$@"; }   # NS CMD...
dir_exec()    { if [ -n "$L7M_DIR_NS" ]; then nsx "$L7M_DIR_NS" "$@"; else "$@"; fi; }
dir_ip()      { if [ -n "$L7M_DIR_NS" ]; then ip -n "$L7M_DIR_NS" "$@"; else ip "$@"; fi; }
client_exec() { nsx "$NS_CLIENT" "$@"; }
rs_ns()       { echo "${L7M_PFX}$1"; }
rs_exec()     { _rs_n=$1; shift; nsx "${L7M_PFX}$_rs_n" "$@"; }                # rsN CMD...
rs_idx()      { case $1 in rs1) echo 2 ;; rs2) echo 3 ;; rs3) echo 4 ;; *) echo "unknown real server '$1'" >&2; return 1 ;; esac; }
rs_ip()       { _ri=$(rs_idx "$1") && echo "10.0.$_ri.2"; }
rs_ip6()      { _ri=$(rs_idx "$1") && echo "fd00:$_ri::2"; }
rs_if()       { _ri=$(rs_idx "$1") && echo "r$((_ri - 1))"; }
rs_docroot()  { echo "$L7M_RUN/www/$1-${2:-80}"; }                            # rsN [PORT]
rs_name_of_ip() {
    case $1 in
        10.0.2.2|fd00:2::2) echo rs1 ;; 10.0.3.2|fd00:3::2) echo rs2 ;; 10.0.4.2|fd00:4::2) echo rs3 ;;
        *) echo "?" ;;
    esac
}

# ---- HTTP clients -------------------------------------------------------------------------------
# Under TCG every exec of a dynamically linked program costs 0.1-0.4 s (curl: ~0.35 s, busybox: ~0.02 s),
# so the plain GET uses busybox wget and curl is kept for what wget cannot do.
# (busybox 1.35 "wget -T" segfaults: the time limit comes from timeout(1).) HTTP_TIMEOUT default 5 s.
# IPv6 literals need brackets: http://[fd00::100]/.
#
# http_get NS URL                    body on stdout; non-zero on failure, timeout or HTTP >= 400
http_get() {
    timeout "${HTTP_TIMEOUT:-5}" "$L7M_IP" netns exec "$1" "$L7M_BUSYBOX" wget -q -O - "$2"
}
# curl_get NS URL [CURL-ARGS...]     the same with curl (-H 'Host: x', -k, --interface, -d ...)
curl_get() {
    _hg_ns=$1; _hg_url=$2; shift 2
    nsx "$_hg_ns" curl -sS --fail --max-time "${HTTP_TIMEOUT:-5}" "$@" "$_hg_url"
}
# http_get_any NS URL [CURL-ARGS...] an HTTP error status still prints the body ("rsN 404")
http_get_any() {
    _hg_ns=$1; _hg_url=$2; shift 2
    nsx "$_hg_ns" curl -sS --max-time "${HTTP_TIMEOUT:-5}" "$@" "$_hg_url"
}
# http_from SRCIP URL [CURL-ARGS...] from the client netns, bound to one of its addresses
http_from() {
    _hf_src=$1; _hf_url=$2; shift 2
    curl_get "$NS_CLIENT" "$_hf_url" --interface "$_hf_src" "$@"
}
# who_answers N URL [SRCIP]: N sequential GETs from the client (from SRCIP if given); prints the
# first body line of each answer, space-separated ("ERR" for a failed request).
who_answers() {
    _wa_n=$1; _wa_url=$2; _wa_src=${3:-}; _wa_out=""
    _wa_i=0
    while [ "$_wa_i" -lt "$_wa_n" ]; do
        if [ -n "$_wa_src" ]; then _wa_b=$(http_from "$_wa_src" "$_wa_url" 2>/dev/null)
        else _wa_b=$(http_get "$NS_CLIENT" "$_wa_url" 2>/dev/null); fi
        _wa_b=$(echo "$_wa_b" | head -n 1)
        _wa_out="$_wa_out ${_wa_b:-ERR}"
        _wa_i=$((_wa_i + 1))
    done
    echo "${_wa_out# }"
}

# ---- background processes -----------------------------------------------------------------------
# bg_start PIDFILE LOG CMD...: start CMD in the background (stdio detached), record its pid.
# The pid is the command's own (exec), so bg_stop really stops it.
bg_start() {
    _bg_pf=$1; _bg_log=$2; shift 2
    ( exec "$@" > "$_bg_log" 2>&1 < /dev/null ) &
    echo $! > "$_bg_pf"
}
_pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# bg_stop PIDFILE: TERM, wait up to 2 s, then KILL
bg_stop() {
    [ -f "$1" ] || return 0
    read -r _sp < "$1" || _sp=""
    rm -f "$1"
    _pid_alive "$_sp" || return 0
    kill "$_sp" 2>/dev/null
    _spi=0
    while _pid_alive "$_sp" && [ "$_spi" -lt 20 ]; do sleep 0.1; _spi=$((_spi + 1)); done
    _pid_alive "$_sp" && kill -9 "$_sp" 2>/dev/null
    return 0
}

# ---- real-server daemons ------------------------------------------------------------------------
# Each real server runs busybox httpd on :80 and :8080. Every file of the docroot holds the server's
# name, so "/", "/index.html", "/a.html", "/b.html", "/img/x", "/img/a.png", "/static/app.js" answer
# "rsN"; any other path answers 404 with the body "rsN 404"; "/port" answers the port;
# "/cgi-bin/info" answers "rsN port=P method=M uri=U host=H remote=R".
_rs_mk_docroot() { # rsN PORT
    _d=$(rs_docroot "$1" "$2")
    rm -rf "$_d"; mkdir -p "$_d/img" "$_d/static" "$_d/cgi-bin"
    for _f in index.html a.html b.html img/x img/a.png img/b.jpg static/app.js static/style.css; do
        echo "$1" > "$_d/$_f"
    done
    echo "$2" > "$_d/port"
    echo "$1 404" > "$_d/404.html"
    echo "E404:404.html" > "$_d/../$1-$2.conf"
    cat > "$_d/cgi-bin/info" <<CGI
#!/bin/sh
r=\${REMOTE_ADDR#[}; r=\${r%]}; r=\${r#::ffff:}
printf 'Content-Type: text/plain\r\n\r\n'
echo "$1 port=$2 method=\$REQUEST_METHOD uri=\$REQUEST_URI host=\$HTTP_HOST remote=\$r"
CGI
    chmod 0755 "$_d/cgi-bin/info"
}
_rs_httpd() { # rsN PORT: start one httpd (no wait)
    bg_start "$L7M_RUN/$1-http-$2.pid" "$L7M_RUN/$1-http-$2.log" \
        "$L7M_IP" netns exec "$(rs_ns "$1")" "$L7M_BUSYBOX" httpd -f -p "$2" -h "$(rs_docroot "$1" "$2")" \
        -c "$L7M_RUN/www/$1-$2.conf"
}
rs_http_up() { # rsN PORT: does the server answer its name (asked from the director)?
    [ "$(dir_exec timeout 3 "$L7M_BUSYBOX" wget -q -O - "http://$(rs_ip "$1"):$2/" 2>/dev/null)" = "$1" ]
}
rs_http_start() { # rsN [PORT=80]: start (or restart) httpd and wait until it answers
    _p=${2:-80}
    bg_stop "$L7M_RUN/$1-http-$_p.pid"
    [ -d "$(rs_docroot "$1" "$_p")" ] || _rs_mk_docroot "$1" "$_p"
    _rs_httpd "$1" "$_p"
    wait_for 10 rs_http_up "$1" "$_p" || { echo "httpd $1:$_p does not answer" >&2; return 1; }
}
rs_http_stop() { # rsN [PORT=80]
    bg_stop "$L7M_RUN/$1-http-${2:-80}.pid"
}
# rs_tls_start rsN [PORT=443]: openssl s_server -WWW serving the :80 docroot (GET /index.html -> "rsN"),
# certificate $L7M_TLS_DIR/cert.pem (self-signed, CN l7mark-test, SAN *.example and the RS/VIP IPs)
rs_tls_start() {
    _p=${2:-443}
    bg_stop "$L7M_RUN/$1-tls-$_p.pid"
    [ -f "$L7M_TLS_DIR/cert.pem" ] || { echo "no test certificate in $L7M_TLS_DIR" >&2; return 1; }
    _d=$(rs_docroot "$1" 80)
    bg_start "$L7M_RUN/$1-tls-$_p.pid" "$L7M_RUN/$1-tls-$_p.log" \
        "$L7M_IP" netns exec "$(rs_ns "$1")" sh -c "cd '$_d' && exec openssl s_server -quiet -WWW -accept $_p \
            -cert '$L7M_TLS_DIR/cert.pem' -key '$L7M_TLS_DIR/key.pem'"
    wait_for 10 _rs_tls_up "$1" "$_p" || { echo "TLS server $1:$_p does not answer" >&2; return 1; }
}
_rs_tls_up() { [ "$(dir_exec curl -sk --max-time 2 "https://$(rs_ip "$1"):$2/index.html" 2>/dev/null)" = "$1" ]; }
rs_tls_stop() { bg_stop "$L7M_RUN/$1-tls-${2:-443}.pid"; }
# rs_udp_start rsN PORT [BINDADDR]: UDP responder; each datagram "X" is answered with "rsN X" (one
# answer per datagram; from BINDADDR if given -- for DR, bind the VIP so the answer comes from it).
rs_udp_start() {
    bg_stop "$L7M_RUN/$1-udp-$2.pid"
    bg_start "$L7M_RUN/$1-udp-$2.pid" "$L7M_RUN/$1-udp-$2.log" \
        "$L7M_IP" netns exec "$(rs_ns "$1")" socat -T 1 "UDP4-RECVFROM:$2${3:+,bind=$3},reuseaddr,fork" \
        SYSTEM:"read x; echo $1 \$x"
    sleep 0.5
    _pid_alive "$(cat "$L7M_RUN/$1-udp-$2.pid")" \
        || { echo "UDP responder $1:$2 died:" >&2; cat "$L7M_RUN/$1-udp-$2.log" >&2; return 1; }
}
rs_udp_stop() { bg_stop "$L7M_RUN/$1-udp-$2.pid"; }
# udp_queries NS SRCPORT DST PORT N: N datagrams "q1".."qN" from ONE socket bound to SRCPORT, in
# lockstep (the next one leaves after the answer to the previous one, or after 3 s: "TIMEOUT qI");
# prints the answers one per line. The socket is unconnected: answers are accepted from any address.
udp_queries() {
    cat > "$L7M_RUN/udpq.sh" <<'EOS'
i=1
while [ "$i" -le "$1" ]; do
    echo "q$i"
    if read -t 3 ans; then echo "$ans" >> "$2"; else echo "TIMEOUT q$i" >> "$2"; fi
    i=$((i + 1))
done
EOS
    : > "$L7M_RUN/udpq.out"
    nsx "$1" socat -T 30 "UDP4-DATAGRAM:$3:$4,bind=:$2,reuseaddr" \
        "EXEC:$L7M_BUSYBOX sh $L7M_RUN/udpq.sh $5 $L7M_RUN/udpq.out" >&2
    cat "$L7M_RUN/udpq.out"
}

# ---- up / down ----------------------------------------------------------------------------------
# Few ip processes on purpose (each costs ~0.1 s under TCG): one "ip -batch" in the current netns
# (namespaces, sysctls via "netns exec"), one for the director, one per other namespace.
_batch() { # NS ("" = current netns); commands on stdin
    if [ -n "$1" ]; then ip -n "$1" -batch -; else ip -batch -; fi
}

topo_up() {
    mkdir -p "$L7M_RUN/www" || return 1
    _nss="$NS_CLIENT $NS_RS1 $NS_RS2 $NS_RS3"
    [ -n "$L7M_DIR_NS" ] && _nss="$L7M_DIR_NS $_nss"
    # DAD off before any link exists (no tentative addresses); forwarding on the director
    {
        for _n in $_nss; do
            echo "netns add $_n"
            echo "netns exec $_n sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"
        done
        if [ -n "$L7M_DIR_NS" ]; then
            echo "netns exec $L7M_DIR_NS sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
        fi
    } | _batch "" || return 1
    if [ -z "$L7M_DIR_NS" ]; then
        sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
            net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 > /dev/null || return 1
    fi
    {
        echo "link set lo up"
        for _a in "$VIP_L7/32" "$VIP_L4/32" "$VIP6/128" "$VIP6_L4/128"; do echo "addr add $_a dev lo"; done
        echo "link add $DIR_IF_CLIENT type veth peer name eth0 netns $NS_CLIENT"
        echo "addr add $CLIENT_GW/24 dev $DIR_IF_CLIENT"
        echo "addr add $CLIENT_GW6/64 dev $DIR_IF_CLIENT nodad"
        echo "link set $DIR_IF_CLIENT up"
        for _r in $RS_ALL; do
            _i=$(rs_idx "$_r"); _if=$(rs_if "$_r")
            echo "link add $_if type veth peer name eth0 netns $(rs_ns "$_r")"
            echo "addr add 10.0.$_i.1/24 dev $_if"
            echo "addr add fd00:$_i::1/64 dev $_if nodad"
            echo "link set $_if up"
        done
    } | _batch "$L7M_DIR_NS" || return 1
    {
        echo "link set lo up"
        echo "addr add $CLIENT_IP/24 dev eth0"
        echo "addr add $CLIENT_IP2/24 dev eth0"
        echo "addr add $CLIENT_IP6/64 dev eth0 nodad"
        echo "addr add $CLIENT_IP6_2/64 dev eth0 nodad"
        echo "link set eth0 up"
        echo "route add default via $CLIENT_GW"
        echo "route add default via $CLIENT_GW6"
    } | _batch "$NS_CLIENT" || return 1
    for _r in $RS_ALL; do
        _i=$(rs_idx "$_r")
        {
            echo "link set lo up"
            echo "addr add 10.0.$_i.2/24 dev eth0"
            echo "addr add fd00:$_i::2/64 dev eth0 nodad"
            echo "link set eth0 up"
            echo "route add default via 10.0.$_i.1"
            echo "route add default via fd00:$_i::1"
        } | _batch "$(rs_ns "$_r")" || return 1
    done
    # six httpds: start all, then wait for all (in parallel: saves seconds under TCG)
    for _r in $RS_ALL; do
        for _p in $RS_HTTP_PORTS; do _rs_mk_docroot "$_r" "$_p" && _rs_httpd "$_r" "$_p" || return 1; done
    done
    for _r in $RS_ALL; do
        for _p in $RS_HTTP_PORTS; do
            wait_for 10 rs_http_up "$_r" "$_p" || { echo "topo_up: httpd $_r:$_p does not answer" >&2; return 1; }
        done
    done
}

_kill_ns_pids() { # NS: TERM, then KILL, every process living in NS
    _kp=$(ip netns pids "$1" 2>/dev/null) || return 0
    [ -z "$_kp" ] && return 0
    # shellcheck disable=SC2086
    kill $_kp 2>/dev/null
    _ki=0
    while [ -n "$(ip netns pids "$1" 2>/dev/null)" ] && [ "$_ki" -lt 20 ]; do sleep 0.1; _ki=$((_ki + 1)); done
    _kp=$(ip netns pids "$1" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -n "$_kp" ] && kill -9 $_kp 2>/dev/null
    return 0
}

# topo_down: kill what runs in our namespaces (unless L7M_TOPO_KILL=0: the VM runner has already
# killed every process), delete them; a director that is the current netns loses its VIPs and links.
topo_down() {
    _nss="$NS_CLIENT $NS_RS1 $NS_RS2 $NS_RS3"
    [ -n "$L7M_DIR_NS" ] && _nss="$_nss $L7M_DIR_NS"
    _del=""
    for _n in $_nss; do
        [ -e "/run/netns/$_n" ] || continue
        [ "${L7M_TOPO_KILL:-1}" = 1 ] && _kill_ns_pids "$_n"
        _del="$_del $_n"
    done
    {
        for _n in $_del; do echo "netns del $_n"; done
        if [ -z "$L7M_DIR_NS" ]; then
            ip -o addr show dev lo | awk '$4 != "127.0.0.1/8" && $4 != "::1/128" {print "addr del " $4 " dev lo"}'
            # normally gone with their peers' namespaces; not if a process still holds one
            for _l in "$DIR_IF_CLIENT" r1 r2 r3; do [ -e "/sys/class/net/$_l" ] && echo "link del $_l"; done
        fi
    } > "$L7M_RUN.down" 2>/dev/null
    [ -s "$L7M_RUN.down" ] && ip -force -batch "$L7M_RUN.down" > /dev/null 2>&1
    rm -f "$L7M_RUN.down" "$L7M_RUN"/*.pid
    return 0
}

topo_show() {
    echo "--- director"; dir_ip -br addr; dir_ip route; dir_ip -6 route
    for _n in $NS_CLIENT $NS_RS1 $NS_RS2 $NS_RS3; do
        echo "--- $_n"; ip -n "$_n" -br addr; ip -n "$_n" route
    done
}

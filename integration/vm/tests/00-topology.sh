#!/bin/sh
# 00-topology: the harness itself -- kernel modules, guest tools, the netns topology (IPv4 and IPv6),
# the real servers' answers (:80, :8080, docroot layout, 404 page, CGI), the TLS and UDP helpers.
# If this fails, every other result is suspect.
. "$L7M_REPO/integration/vm/lib.sh"

step "kernel and tools"
echo "kernel $(uname -r)"
for m in ip_vs ip_vs_rr nf_tables nft_queue nfnetlink_queue nf_conntrack nf_synproxy_core veth; do
    check "module $m loaded" grep -q "^$m " /proc/modules
done
for t in nft ipvsadm conntrack tcpdump keepalived openssl curl socat; do
    if command -v "$t" >/dev/null; then ok "tool $t present"; else fail "tool $t missing"; fi
done
check "nft runs" nft --version
check "keepalived runs" keepalived --version
check "curl runs" curl --version
check "iproute2 ip (not the busybox applet) has netns support" sh -c '/bin/ip netns list >/dev/null'
run ipvsadm -Ln
check "/proc/net/ip_vs exists" test -r /proc/net/ip_vs

step "host-built binaries (L7MARK_GUEST_BINS) in /usr/local/bin"
n=0
for b in /usr/local/bin/*; do
    [ -f "$b" ] || continue
    n=$((n + 1))
    check "$b --version runs (its libraries are in the guest)" "$b" --version
done
[ "$n" = 0 ] && echo "(none: tests that need l7mark will fail)"

step "topology"
topo_show
expect_eq "ip_forward on the director" "$(cat /proc/sys/net/ipv4/ip_forward)" 1
expect_eq "IPv6 forwarding on the director" "$(cat /proc/sys/net/ipv6/conf/all/forwarding)" 1
check "VIP_L7 $VIP_L7 on lo" sh -c "/bin/ip -o addr show dev lo | grep -q ' $VIP_L7/32 '"
check "VIP6 $VIP6 on lo" sh -c "/bin/ip -o addr show dev lo | grep -q ' $VIP6/128 '"
check "client has $CLIENT_IP2" sh -c "/bin/ip -n $NS_CLIENT -o addr show dev eth0 | grep -q ' $CLIENT_IP2/24 '"

step "real servers, direct from the client (routed by the director)"
for r in $RS_ALL; do
    for p in 80 8080; do
        expect_eq "GET http://$(rs_ip "$r"):$p/ from the client" "$(http_get "$NS_CLIENT" "http://$(rs_ip "$r"):$p/")" "$r"
    done
    expect_eq "GET /port on $r:8080" "$(http_get "$NS_CLIENT" "http://$(rs_ip "$r"):8080/port")" 8080
    expect_eq "GET /img/x on $r" "$(http_get "$NS_CLIENT" "http://$(rs_ip "$r")/img/x")" "$r"
    expect_eq "IPv6 GET http://[$(rs_ip6 "$r")]/a.html" "$(http_get "$NS_CLIENT" "http://[$(rs_ip6 "$r")]/a.html")" "$r"
done
expect_eq "unknown path -> 404 page naming the server" "$(http_get_any "$NS_CLIENT" "http://$RS2_IP/no/such/thing")" "rs2 404"
if http_get "$NS_CLIENT" "http://$RS2_IP/no/such/thing" >/dev/null 2>&1; then fail "http_get accepted a 404"; else ok "http_get fails on a 404"; fi
out=$(curl_get "$NS_CLIENT" "http://$RS3_IP:8080/cgi-bin/info?x=1" -H "Host: a.example")
echo "cgi: $out"
case $out in "rs3 port=8080 method=GET uri=/cgi-bin/info?x=1 host=a.example remote=$CLIENT_IP") ok "CGI info" ;;
    *) fail "CGI info: $out" ;; esac
expect_eq "second client address $CLIENT_IP2 reaches rs1" "$(http_from "$CLIENT_IP2" "http://$RS1_IP/cgi-bin/info" | awk '{print $NF}')" "remote=$CLIENT_IP2"
expect_eq "the VIP answers nothing before IPVS is configured" "$(http_get "$NS_CLIENT" "http://$VIP_L7/" 2>/dev/null || echo refused)" refused

step "helpers: rs_http_stop/start, TLS, UDP"
rs_http_stop rs2 80
expect_eq "rs2:80 stopped" "$(http_get "$NS_CLIENT" "http://$RS2_IP/" 2>/dev/null || echo down)" down
rs_http_start rs2 80
expect_eq "rs2:80 restarted" "$(http_get "$NS_CLIENT" "http://$RS2_IP/")" rs2
if rs_tls_start rs1 443; then
    expect_eq "TLS GET https://$RS1_IP/index.html" "$(curl_get "$NS_CLIENT" "https://$RS1_IP/index.html" -k)" rs1
else
    fail "rs_tls_start rs1"
fi
if rs_udp_start rs3 5353; then
    expect_eq "UDP query to rs3" "$(udp_queries "$NS_CLIENT" 40000 "$RS3_IP" 5353 2 | tr '\n' ' ')" "rs3 q1 rs3 q2 "
else
    fail "rs_udp_start rs3"
fi

step "debugging aid: nft monitor trace (integration/README.md)"
nft -f - <<EOF || fail "nft trace table"
table ip l7m_trace {
    chain pre {
        type filter hook prerouting priority raw; policy accept;
        ip saddr $CLIENT_IP ip daddr $RS1_IP tcp dport 8080 meta nftrace set 1
    }
}
EOF
bg_start /run/l7m/trace.pid "$L7M_ARTIFACTS/nft-trace.txt" nft monitor trace
sleep 1
http_get "$NS_CLIENT" "http://$RS1_IP:8080/" > /dev/null || fail "GET for the trace"
check "nft monitor trace shows the traced packets" \
    wait_for 5 grep -q "trace id .* ip l7m_trace pre" "$L7M_ARTIFACTS/nft-trace.txt"
bg_stop /run/l7m/trace.pid
head -n 5 "$L7M_ARTIFACTS/nft-trace.txt"

#!/bin/sh
# 00-topology: the netns lab itself -- namespaces, IPv4/IPv6 routing through the director, the real
# servers' answers (:80, :8080, docroot layout, 404 page, CGI) and the TLS/UDP helpers, on the host.
. "$L7M_REPO/integration/netns/lib.sh"

step "topology"
topo_show
expect_eq "director forwards IPv4" "$(dir_exec cat /proc/sys/net/ipv4/ip_forward)" 1
expect_eq "director forwards IPv6" "$(dir_exec cat /proc/sys/net/ipv6/conf/all/forwarding)" 1
check "VIP_L7 on the director's lo" sh -c "$L7M_IP -n $L7M_DIR_NS -o addr show dev lo | grep -q ' $VIP_L7/32 '"
check "host netns untouched (no c0/r1 link here)" sh -c "! $L7M_IP link show c0 >/dev/null 2>&1"

step "real servers from the client"
for r in $RS_ALL; do
    for p in 80 8080; do
        expect_eq "GET http://$(rs_ip "$r"):$p/" "$(http_get "$NS_CLIENT" "http://$(rs_ip "$r"):$p/")" "$r"
    done
    expect_eq "IPv6 GET http://[$(rs_ip6 "$r")]/img/x" "$(http_get "$NS_CLIENT" "http://[$(rs_ip6 "$r")]/img/x")" "$r"
done
expect_eq "404 page names the server" "$(http_get_any "$NS_CLIENT" "http://$RS1_IP/nope")" "rs1 404"
expect_eq "CGI info" "$(curl_get "$NS_CLIENT" "http://$RS2_IP:8080/cgi-bin/info?a=b" -H 'Host: x.example')" \
    "rs2 port=8080 method=GET uri=/cgi-bin/info?a=b host=x.example remote=$CLIENT_IP"
expect_eq "second client address" "$(http_from "$CLIENT_IP2" "http://$RS2_IP/cgi-bin/info" | awk '{print $NF}')" "remote=$CLIENT_IP2"

step "helpers"
rs_http_stop rs3 8080
expect_eq "rs3:8080 stopped" "$(http_get "$NS_CLIENT" "http://$RS3_IP:8080/" 2>/dev/null || echo down)" down
rs_http_start rs3 8080 || fail "rs_http_start rs3 8080"
expect_eq "rs3:8080 back" "$(http_get "$NS_CLIENT" "http://$RS3_IP:8080/")" rs3
if rs_tls_start rs2 443; then
    expect_eq "TLS" "$(curl_get "$NS_CLIENT" "https://$RS2_IP/index.html" -k)" rs2
else
    fail "rs_tls_start rs2"
fi
if rs_udp_start rs1 5353; then
    expect_eq "UDP" "$(udp_queries "$NS_CLIENT" 40000 "$RS1_IP" 5353 2 | tr '\n' ' ')" "rs1 q1 rs1 q2 "
else
    fail "rs_udp_start rs1"
fi

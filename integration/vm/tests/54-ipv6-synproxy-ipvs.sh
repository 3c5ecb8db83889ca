#!/bin/sh
# 54-ipv6-synproxy-ipvs: the kernel half of IPv6 delayed binding, without l7mark. Proves on real
# IPVS that the parts the IPv4 binder relies on exist for IPv6 too:
#  * SYNPROXY answers an IPv6 client SYN (nft synproxy in input, ipv6_synproxy_hook) and, on the
#    cookie ACK, sends its server SYN through ip6_local_out;
#  * that SYN crosses the output hook before IPVS (ip_vs_ops6: ip_vs_local_request6 at LOCAL_OUT),
#    where an nft rule gives it an fwmark, and IPVS schedules the IPv6 fwmark service (NAT);
#  * SYNPROXY completes both sides (seqadj) and the connection carries data both ways.
# Here the mark is static (no queue, no classification, stock zero window): the delay and the
# classification are l7mark's IPv4-only binder, which is what IPv6 still lacks (docs/limits.md).
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"

step "IPv6 SYNPROXY + IPVS fwmark NAT service, mark set on SYNPROXY's server SYN at output"
sysctl -q -w net.ipv4.vs.conntrack=1 net.netfilter.nf_conntrack_tcp_loose=0 >/dev/null || fatal "sysctls"
rs_http_start rs1 80 || fatal "httpd rs1"
ipvsadm -A -f 150 -6 -s rr && ipvsadm -a -f 150 -6 -r "[$RS1_IP6]:80" -m || fatal "IPv6 fwmark service"
nft -f - <<EOF || fatal "nft"
table ip6 v6bind {
    chain raw_pre {
        type filter hook prerouting priority raw; policy accept;
        ip6 daddr $VIP6 tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn counter notrack
    }
    chain out_mark {
        type filter hook output priority -150; policy accept;
        ip6 daddr $VIP6 tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn counter meta mark set 150 comment "server-syn"
    }
    chain in_sp {
        type filter hook input priority 0; policy accept;
        ip6 daddr $VIP6 tcp dport 80 ct state invalid,untracked counter synproxy mss 1440 wscale 7 timestamp sack-perm
        ip6 daddr $VIP6 tcp dport 80 ct state invalid counter drop
    }
}
EOF
body=$(client_exec curl -s --max-time 10 "http://[$VIP6]/index.html")
expect_eq "IPv6 client through SYNPROXY + IPVS fwmark 150 -> rs1" "$body" rs1
check "SYNPROXY sent the server SYN (marked at output)" sh -c "nft list chain ip6 v6bind out_mark | grep -q 'packets [1-9]'"
ipvsadm -Lnc
check "IPVS scheduled it: a connection to [$RS1_IP6]:80" sh -c "ipvsadm -Lnc | grep -q '$RS1_IP6'"
conntrack -L -f ipv6 2>/dev/null
check "conntrack: the IPv6 connection is tracked with the real server as reply source" \
    sh -c "conntrack -L -f ipv6 -p tcp 2>/dev/null | grep -q 'src=$RS1_IP6'"
code=$(client_exec curl -s --max-time 20 "http://[$VIP6]/index.html" -o /dev/null -w '%{http_code}')
expect_eq "a second connection answers too" "$code" 200
nft delete table ip6 v6bind
ipvsadm -D -f 150 -6

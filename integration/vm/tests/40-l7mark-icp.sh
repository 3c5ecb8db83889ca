#!/bin/sh
# 40-l7mark-icp: l7mark on real IPVS routes ICP queries per URL.
#  * three caches (rs1..rs3) answer ICP on VIP:3130 (DR: the VIP on their lo) and put their own
#    address in the reply's sender field, so the client sees which cache answered;
#  * IPVS: one-packet-scheduling (-o) UDP fwmark services, DR: 120 -> rs1, 121 -> rs2,
#    122 -> rs3, default 100 -> rs1 (created with l7mark-ipvs);
#  * l7mark applies its own nft table and classifies every query by its URL: url_hash over
#    120/121/122 (Squid CARP with the caches' names);
#  * a stream of 41 queries from ONE source port (as Squid sends them) must reach, per URL, the
#    cache l7mark's classifier names for it (l7mark explain), every cache must get some, and every
#    query must be answered.
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
need_bin l7mark
need_bin l7mark-testkit
. "$L7M_REPO/integration/vm/l7mark-lib.sh"

icp_caches_up
icp_ipvs_services

step "l7mark with an ICP service (DR, per query)"
icp_rules > rules.json
icp_config > l7mark.toml
check "l7mark check accepts the config" l7mark check --config l7mark.toml
l7mark_start l7mark.toml || fatal "l7mark did not start"
expect_eq "l7mark bound its 12 queues" "$(grep -c . /proc/net/netfilter/nfnetlink_queue)" 12

step "expected owner of each URL, from l7mark's own classifier"
urls=$(icp_urls 40)
icp_expected rules.json $urls > expected.txt
for c in $RS1_IP $RS2_IP $RS3_IP; do
    expect_ge "URLs owned by $c" "$(grep -c " $c\$" expected.txt)" 3
done

step "41 queries from ONE source port (3130), like Squid"
# shellcheck disable=SC2086
client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" --timeout-ms 5000 $urls > replies.txt
rc=$?
cat replies.txt
expect_eq "every query answered" "$rc/$(grep -c '^REPLY' replies.txt)" "0/41"
expect_eq "every query answered by the cache that owns its URL" "$(icp_misrouted expected.txt replies.txt)" 0
for r in $RS_ALL; do
    expect_ge "$r received queries" "$(grep -c '^QUERY' "$L7M_RUN/$r-icp.log")" 3
done
expect_eq "no IPVS UDP connection entry for the client's ICP socket (one-packet scheduling)" \
    "$(ipvsadm -Lnc | grep -c "^UDP .*$CLIENT_IP:3130 ")" 0
q=$(nft list chain inet l7mark classify_prerouting | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
expect_ge "l7mark's queue rule counted the queries" "${q:-0}" 41

step "the same URL again goes to the same cache"
u1=$(sed -n 1p expected.txt | cut -d' ' -f1); c1=$(sed -n 1p expected.txt | cut -d' ' -f2)
client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" "$u1" "$u1" "$u1" > again.txt
expect_eq "3 repeats of $u1 answered by $c1" "$(grep -c "sender $c1\$" again.txt)" 3

step "clean stop removes l7mark's table"
l7mark_stop
check "nft table removed" sh -c "! nft list table inet l7mark >/dev/null 2>&1"
check "l7mark logged no error" sh -c "! grep -E 'ERROR|WARN' $L7M_RUN/l7mark.log"

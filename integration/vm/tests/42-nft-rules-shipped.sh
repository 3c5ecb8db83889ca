#!/bin/sh
# 42-nft-rules-shipped: the rulesets shipped in nft-rules/ load on Debian 12's nft and kernel, touch
# only l7mark's table, and work: with [nft] manage = false and nft-rules/icp-dr.nft loaded by
# hand, l7mark routes ICP queries per URL exactly as when it applies the table itself.
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
need_bin l7mark
need_bin l7mark-testkit
. "$L7M_REPO/integration/vm/l7mark-lib.sh"

step "every shipped ruleset passes nft -c and loads"
nft -f - <<EOF || fail "operator's own table"
table ip operator {
    chain pre {
        type filter hook prerouting priority 0; policy accept;
        counter comment "theirs"
    }
}
EOF
for f in "$L7M_REPO"/nft-rules/*.nft; do
    check "nft -c -f $(basename "$f")" nft -c -f "$f"
    check "nft -f $(basename "$f")" nft -f "$f"
    check "$(basename "$f") left the operator's table alone" nft list table ip operator
done
chains=$(nft list table inet l7mark | awk '$1 == "chain" {print $2}' | tr '\n' ' ')
expect_eq "the last loaded (l7mark-full) defines l7mark's chains" "$chains" \
    "raw_prerouting classify_prerouting synack_window hold_server_syn client_to_binder server_synack syn_proxy "
check "loading twice replaces, never duplicates" sh -c \
    "nft -f $L7M_REPO/nft-rules/l7mark-full.nft && [ \$(nft list table inet l7mark | grep -c 'synproxy mss') = 2 ]"

step "l7mark nft renders what the shipped file holds"
l7mark nft --config "$L7M_REPO/examples/icp-dr.toml" --rules "$L7M_REPO/examples/rules.json" --replace > rendered.nft
tail -n +7 "$L7M_REPO/nft-rules/icp-dr.nft" > shipped.nft
check "rendered = shipped (icp-dr)" cmp rendered.nft shipped.nft

step "operator-loaded icp-dr.nft + l7mark with manage = false"
nft delete table inet l7mark
nft -f "$L7M_REPO/nft-rules/icp-dr.nft" || fatal "load icp-dr.nft"
icp_caches_up
icp_ipvs_services
# The shipped file's default mark is examples/rules.json's (100), its queues 100-101 (2 workers).
icp_rules > rules.json
icp_config > l7mark.toml
printf '[nft]\nmanage = false\n' >> l7mark.toml
l7mark_start l7mark.toml || fatal "l7mark did not start"
urls=$(icp_urls 24)
# shellcheck disable=SC2086
icp_expected rules.json $urls > expected.txt
# shellcheck disable=SC2086
client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" $urls > replies.txt
expect_eq "every query answered" "$(grep -c '^REPLY' replies.txt)" 25
expect_eq "every query answered by its URL's owner" "$(icp_misrouted expected.txt replies.txt)" 0
l7mark_stop
check "with manage = false the operator's l7mark table stays after the stop" nft list table inet l7mark
check "the operator's own table is untouched" nft list table ip operator

#!/bin/sh
# Director of the docker compose lab: kernel settings, the VIP, the IPVS fwmark services, then
# l7mark in the foreground. Every step fails loudly; nothing is skipped.
set -eu

VIP=${VIP:-10.0.0.100}
CONFIG=${L7MARK_CONFIG:-/etc/l7mark/l7mark.toml}
SERVICES=${L7MARK_SERVICES:-/etc/l7mark/services.conf}
RULES_SEED=${L7MARK_RULES_SEED:-/etc/l7mark/rules.seed.json}
RULES=/var/lib/l7mark/rules.json

die() { echo "director: $*" >&2; exit 1; }

# Containers share the host's kernel: its modules cannot be loaded from here.
[ -e /proc/net/ip_vs ] ||
    die "the host kernel has no IPVS (/proc/net/ip_vs is missing): run 'modprobe ip_vs' on the host"
grep -qw nfnetlink_queue /proc/modules 2>/dev/null || [ -e /proc/net/netfilter/nfnetlink_queue ] ||
    die "the host kernel has no nfnetlink_queue: run 'modprobe nfnetlink_queue nft_queue nft_synproxy' on the host"

# Per network namespace, so these change only the director container.
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv4.vs.conntrack=1
sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0

ip addr replace "$VIP/32" dev lo

l7mark-ipvs check "$SERVICES"
l7mark-ipvs apply --prune "$SERVICES"

# The REST API rewrites the rules file, so it lives in the state volume; seed it once.
mkdir -p /var/lib/l7mark
[ -e "$RULES" ] || cp "$RULES_SEED" "$RULES"

l7mark check --config "$CONFIG"
exec l7mark run --config "$CONFIG"

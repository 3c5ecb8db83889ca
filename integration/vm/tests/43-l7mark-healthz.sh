#!/bin/sh
# 43-l7mark-healthz: GET /healthz on real IPVS. It flags a mark the rules use with no IPVS fwmark
# service (503, the mark named), is healthy once the service exists, flags a DR real server on a
# mark that an HTTP rule uses (TCP L7 needs Masq), flags a rule added through the API whose mark
# has no service, flags a missing nft table, and reports role "backup" when the director holds no
# VIP (a keepalived BACKUP).
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
need_bin l7mark
. "$L7M_REPO/integration/vm/l7mark-lib.sh"

sysctl -q -w net.ipv4.vs.conntrack=1 net.netfilter.nf_conntrack_tcp_loose=0 >/dev/null
cat > rules.json <<EOF
{ "default_mark": 100,
  "rules": [ {"id": "a", "host": "a.example", "mark": 110},
             {"id": "b", "host": "b.example", "mark": 111} ] }
EOF
cat > l7mark.toml <<EOF
rules_file = "/tmp/l7m-test/rules.json"
[marks]
min = 100
max = 999
[[service]]
name = "web"
vip = "$VIP_L7"
port = 80
proto = "http"
[queues]
base = 100
workers = 1
[api]
listen = "127.0.0.1:9180"
EOF
cat > ipvs.conf <<EOF
service 100 tcp nat rr
    real $RS1_IP:8080
service 111 tcp nat rr
    real $RS2_IP:80
EOF
run "$L7MARK_IPVS" apply ipvs.conf || fatal "ipvs"
l7mark_start l7mark.toml || fatal "l7mark did not start"
health() { curl -s -o health.json -w '%{http_code}' --max-time 5 http://127.0.0.1:9180/healthz; }

step "mark 110 has no IPVS service"
expect_eq "GET /healthz" "$(health)" 503
cat health.json; echo
check "the ipvs check fails naming mark 110" grep -q 'mark 110: no IPVS fwmark service' health.json
check "queues and nft table are fine" sh -c "grep -q '\"queues\":{\"status\":\"ok\"' health.json && grep -q '\"nft_table\":{\"status\":\"ok\"' health.json"

step "add the service: healthy"
printf 'service 110 tcp nat rr\n    real %s:80\n' "$RS1_IP" >> ipvs.conf
run "$L7MARK_IPVS" apply ipvs.conf || fail "ipvs 110"
expect_eq "GET /healthz" "$(health)" 200
check "role active (the VIP is held)" grep -q '"role":"active"' health.json

step "a DR real server on mark 110 (used by an HTTP rule)"
ipvsadm -e -f 110 -r "$RS1_IP:80" -g 2>/dev/null || { ipvsadm -d -f 110 -r "$RS1_IP:80"; ipvsadm -a -f 110 -r "$RS1_IP" -g; }
ipvsadm -Ln -f 110
expect_eq "GET /healthz" "$(health)" 503
check "says TCP L7 needs Masq" grep -qi 'masq' health.json
ipvsadm -C; "$L7MARK_IPVS" apply ipvs.conf >/dev/null || fail "restore"
expect_eq "GET /healthz after the fix" "$(health)" 200

step "a rule added through the API with a mark that has no service"
code=$(curl -s -o post.txt -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data '{"id": "c", "host": "c.example", "mark": 112}' http://127.0.0.1:9180/v1/rules)
expect_eq "POST /v1/rules" "$code" 201
expect_eq "GET /healthz" "$(health)" 503
check "names mark 112" grep -q 'mark 112: no IPVS fwmark service' health.json
curl -s -o /dev/null -X DELETE http://127.0.0.1:9180/v1/rules/c
expect_eq "GET /healthz after DELETE" "$(health)" 200

step "nft table missing"
nft delete table inet l7mark
expect_eq "GET /healthz" "$(health)" 503
check "the nft_table check fails" sh -c "grep -q '\"nft_table\":{\"status\":\"fail\"' health.json"
l7mark_stop
l7mark_start l7mark.toml || fatal "restart"
expect_eq "GET /healthz after a restart (table applied again)" "$(health)" 200

step "VIP not held: backup director"
ip addr del "$VIP_L7/32" dev lo
expect_eq "GET /healthz" "$(health)" 200
check "role backup" grep -q '"role":"backup"' health.json
ip addr add "$VIP_L7/32" dev lo
l7mark_stop

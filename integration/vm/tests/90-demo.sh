#!/bin/sh
# 90-demo: the main job (integration/demo.sh). l7mark on real IPVS in Debian 12's kernel:
# HTTP by Host and path, TLS by SNI (delayed binding through SYNPROXY, IPVS NAT) and ICP by URL
# (one-packet scheduling, DR). Prints request -> rule -> mark -> real server, expected vs got,
# then changes a rule through the REST API and shows the traffic move. Any wrong row fails.
. "$L7M_REPO/integration/vm/lib.sh"
cd /tmp/l7m-test || fatal "no test dir"
need_bin l7mark
need_bin l7mark-testkit
. "$L7M_REPO/integration/vm/l7mark-lib.sh"

icp_caches_up
icp_ipvs_services
binder_setup default
l7mark_stop
step "one daemon for HTTP (VIP:80), TLS (VIP:443) and ICP (VIP:3130)"
# the binder's rules plus the caches' URL hash (binder_rules ends with the tls-other rule)
binder_rules | sed 's/"mark": 114} \] }$/"mark": 114},/' > rules.json
cat >> rules.json <<EOF
    {"id": "cache", "icp": true, "url_hash": {"marks": [120, 121, 122],
       "members": ["cache1.example.net", "cache2.example.net", "cache3.example.net"]}} ] }
EOF
cat >> l7mark.toml <<EOF
[[service]]
name = "icp"
vip = "$VIP_L7"
port = 3130
proto = "icp"
forwarding = "dr"
EOF
l7mark check --config l7mark.toml || fatal "config"
l7mark_start l7mark.toml || fatal "l7mark did not start"

ROWS=/tmp/l7m-test/rows.txt
: > "$ROWS"
row() { # REQUEST RULE MARK EXPECTED GOT
    if [ "$4" = "$5" ]; then _v=ok; else _v=WRONG; fail "$1: expected $4, got $5"; fi
    printf '%-44s %-11s %-5s %-9s %-9s %s\n' "$1" "$2" "$3" "$4" "$5" "$_v" >> "$ROWS"
}
explain_http() { # HOST PATH -> "rule mark"
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\n\r\n' "$2" "$1" \
        | l7mark explain --rules rules.json --proto http --payload - \
        | sed 's/{"rule":"\{0,1\}\([^",]*\)"\{0,1\},"mark":\([0-9]*\).*/\1 \2/'
}
http_row() { # HOST PATH EXPECTED-SERVER [LABEL]
    _label=${4:-}
    set -- "$1" "$2" "$3" $(explain_http "$1" "$2")
    got=$(client_exec curl -s --max-time 10 -H "Host: $1" "http://$VIP_L7$2" | sed -n 's/^served-by=\([^ ]*\).*/\1/p')
    row "HTTP Host $1 $2$_label" "$4" "$5" "$3" "${got:-none}"
}
tls_row() { # SNI RULE MARK EXPECTED-SERVER
    got=$(tls_get "$1")
    row "TLS SNI $1" "$2" "$3" "$4" "${got:-none}"
}
icp_row() { # URL
    l7mark-testkit icp-encode "$1" > q.bin
    set -- "$1" $(l7mark explain --rules rules.json --proto icp --payload q.bin \
        | sed 's/{"rule":"\{0,1\}\([^",]*\)"\{0,1\},"mark":\([0-9]*\).*/\1 \2/')
    case $3 in 120) want=rs1 ;; 121) want=rs2 ;; 122) want=rs3 ;; *) want=rs1 ;; esac
    sender=$(client_exec l7mark-testkit icp-query --to "$VIP_L7:3130" --bind "$CLIENT_IP:3130" "$1" \
        | awk '$1 == "REPLY" {print $NF}')
    row "ICP query $1" "$2" "$3" "$want" "$(rs_name_of_ip "$sender")"
}

step "traffic"
http_row a.example / rs1
http_row b.example /index.html rs2
http_row static.example.com /img/logo.png rs3
http_row unknown.example / rs1-8080
tls_row secure.example.com tls-secure 113 rs3
tls_row www.example.com tls-other 114 rs2
for u in http://cdn.example.net/obj/1.jpg http://cdn.example.net/obj/2.jpg http://cdn.example.net/obj/11.jpg \
         http://cdn.example.net/obj/13.jpg http://cdn.example.net/obj/15.jpg; do
    icp_row "$u"
done

step "change rule a through the REST API: a.example -> mark 111 (rs2)"
etag=$(curl -s -D - -o /dev/null http://127.0.0.1:9180/v1/rules | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' | tr -d '\r')
code=$(curl -s -o put.txt -w '%{http_code}' -X PUT -H 'Content-Type: application/json' -H "If-Match: $etag" \
    --data '{"id": "a", "host": "a.example", "mark": 111}' http://127.0.0.1:9180/v1/rules/a)
expect_eq "PUT /v1/rules/a" "$code" 200
http_row a.example / rs2 " (after PUT)"

step "result"
printf '%-44s %-11s %-5s %-9s %-9s %s\n' REQUEST RULE MARK EXPECTED GOT "" 
cat "$ROWS"
expect_eq "rows wrong" "$(grep -c 'WRONG$' "$ROWS")" 0
l7mark_stop

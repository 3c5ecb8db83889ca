#!/bin/sh
# Real server of the docker compose lab: answers every path with its own name (busybox httpd)
# and routes its replies through the director, as IPVS NAT requires.
set -eu

: "${RS_NAME:?RS_NAME is not set}"
: "${DIRECTOR_IP:?DIRECTOR_IP is not set}"

mkdir -p /www/img
for f in index.html a.html b.html img/x; do
    echo "$RS_NAME" > "/www/$f"
done

# NAT mode: replies must pass the director to be de-NATed (needs NET_ADMIN in this container).
ip route replace default via "$DIRECTOR_IP"

exec httpd -f -v -p 80 -h /www

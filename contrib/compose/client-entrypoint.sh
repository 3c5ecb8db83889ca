#!/bin/sh
# Client of the docker compose lab: a route to the VIP through the director, then wait.
#   docker compose exec client wget -qO- --header 'Host: a.example' http://10.0.0.100/   # rs1
set -eu

: "${VIP:=10.0.0.100}"
: "${DIRECTOR_IP:?DIRECTOR_IP is not set}"

ip route replace "$VIP/32" via "$DIRECTOR_IP"
exec sleep 2147483647

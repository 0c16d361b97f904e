#!/bin/sh
# Runs harness gateway against nginx (round-robin, least_conn) and HAProxy (roundrobin,
# leastconn): the default cells (equal nodes, the gateway's own overhead, one node slowed to 1/4
# speed, one node refusing
# and then busy for 2 s mid-run, all through the nodes' control API), and a run with 5% injected
# 500s on one node. Needs nginx and haproxy on PATH (apt-get install nginx haproxy). Results go
# to results/gateways/. About 12 minutes on a 2-core machine.
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p harness
H=./target/release/harness
COMMON="--target http://127.0.0.1:18080 --requests 1000 --workers 8 --service 5ms --repeats 3 --no-progress"
run() {
    label=$1; cmd=$2; conf=$3; shift 3
    $H gateway $COMMON --label "$label" --cmd "$cmd" --config-template "examples/gateways/$conf" "$@"
    $H gateway $COMMON --label "$label-errors" --cells distribution --error-rates 0,0.05 --cmd "$cmd" --config-template "examples/gateways/$conf" "$@"
}
NGINX='nginx -p {dir} -c {config} -g "daemon off;"'
HAPROXY='haproxy -db -f {config}'
run nginx-round-robin "$NGINX" nginx-round-robin.conf
run nginx-least-conn "$NGINX" nginx-least-conn.conf
run haproxy-roundrobin "$HAPROXY" haproxy-roundrobin.cfg
run haproxy-leastconn "$HAPROXY" haproxy-leastconn.cfg
# HAProxy with an active health check on /api/tags: what the checks cost, and what they see.
$H gateway $COMMON --label haproxy-leastconn-check --cells distribution,node-refuse,node-busy --cmd "$HAPROXY" --config-template examples/gateways/haproxy-leastconn-check.cfg
# Streamed chat: nginx passes lines through; HAProxy holds each answer whole unless told
# option http-no-delay.
$H gateway $COMMON --label nginx-round-robin-streaming --cells streaming --cmd "$NGINX" --config-template examples/gateways/nginx-round-robin.conf
$H gateway $COMMON --label haproxy-roundrobin-streaming --cells streaming --cmd "$HAPROXY" --config-template examples/gateways/haproxy-roundrobin.cfg
$H gateway $COMMON --label haproxy-roundrobin-no-delay-streaming --cells streaming --cmd "$HAPROXY" --config-template examples/gateways/haproxy-roundrobin-no-delay.cfg
# nginx retrying 500s on the other node: no client-visible error, but see where the load goes.
$H gateway $COMMON --label nginx-least-conn-retry-errors --cells distribution --error-rates 0,0.05 --cmd "$NGINX" --config-template examples/gateways/nginx-least-conn-retry.conf

#!/bin/sh
# Runs harness gateway against nginx (round-robin, least_conn) and HAProxy (roundrobin,
# leastconn with maxconn 4): every default cell (equal nodes, the gateway's own overhead, the
# last node 3x and 7x slower, spare-slot scaling, open loop at 50/80/95%, and the last node
# refusing, busy, hanging, resetting, stalling 1 s or answering 5% with 500 for 2 s mid-run, and
# every node's control plane taking 1 s), all through the nodes' control API; then HAProxy with
# an active health check, nginx retrying 500/503, streamed chat through each, and repeated
# inputs, and answers of about 64 KiB through nginx and HAProxy round-robin. Each result is then judged against examples/gateways/bounds.json (written to
# results/gateways/bounds.txt). Needs nginx and haproxy on PATH (apt-get install nginx haproxy).
# Results go to results/gateways/. About 30 minutes on a 2-core machine.
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p harness
H=./target/release/harness
COMMON="--target http://127.0.0.1:18080 --requests 2000 --workers 8 --service 5ms --repeats 3 --no-progress"
NGINX='nginx -p {dir} -c {config} -g "daemon off;"'
HAPROXY='haproxy -db -f {config}'
gw() {
    label=$1; cmd=$2; conf=$3; shift 3
    $H gateway $COMMON --label "$label" --cmd "$cmd" --config-template "examples/gateways/$conf" "$@"
}
gw nginx-round-robin "$NGINX" nginx-round-robin.conf
gw nginx-least-conn "$NGINX" nginx-least-conn.conf
gw haproxy-roundrobin "$HAPROXY" haproxy-roundrobin.cfg
gw haproxy-leastconn "$HAPROXY" haproxy-leastconn.cfg
# HAProxy with an active health check on /api/tags: what the checks cost, and what they see.
gw haproxy-leastconn-check "$HAPROXY" haproxy-leastconn-check.cfg \
    --cells distribution,node-refuse,node-busy,node-hang,slow-control-plane
# nginx retrying 500s and 503s on the other node: fewer client-visible errors, but see where
# the load goes.
gw nginx-least-conn-retry "$NGINX" nginx-least-conn-retry.conf \
    --cells distribution,node-busy,node-reset,node-errors
# Streamed chat: nginx passes lines through; HAProxy holds each answer whole unless told
# option http-no-delay.
gw nginx-round-robin-streaming "$NGINX" nginx-round-robin.conf --cells streaming
gw haproxy-roundrobin-streaming "$HAPROXY" haproxy-roundrobin.cfg --cells streaming
gw haproxy-roundrobin-no-delay-streaming "$HAPROXY" haproxy-roundrobin-no-delay.cfg --cells streaming
# Answers of about 64 KiB (a batch of 1024-dimension vectors): what each proxy adds to large bodies.
gw nginx-round-robin-large-answers "$NGINX" nginx-round-robin.conf --cells large-answers
gw haproxy-roundrobin-large-answers "$HAPROXY" haproxy-roundrobin.cfg --cells large-answers
# One input for every request: joined by x-request-id; a cache would show as answers without a node.
gw nginx-round-robin-repeat-inputs "$NGINX" nginx-round-robin.conf --cells distribution --repeat-inputs
# The four main configs against the example bounds (a failing bound is a finding, not an error).
for label in nginx-round-robin nginx-least-conn haproxy-roundrobin haproxy-leastconn; do
    $H gate --gateway "results/gateways/$label.json" --bounds examples/gateways/bounds.json || true
done > results/gateways/bounds.txt
cat results/gateways/bounds.txt

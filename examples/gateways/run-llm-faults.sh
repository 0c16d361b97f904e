#!/bin/sh
# Streamed chat through nginx (round-robin; least_conn with retries) and HAProxy (roundrobin;
# leastconn with a health check) when something goes wrong mid-stream: the last node refusing
# connections, resetting every stream 2 tokens in, or stalling every stream 1 s 2 tokens in, for
# the middle of three phases (node-refuse, node-reset, node-stall); and clients that leave half
# the streams after 4 tokens (distribution with --leave-after 4 --leave-share 0.5), on nodes
# that finish the token in progress, as Ollama's runner does (and the leave run alone through
# HAProxy roundrobin with http-no-delay, to tell its buffering apart). 64-token prompts, 32-token
# answers, 5 ms a token, 2 nodes with 4 slots each, 8 workers, 3 repeats.
# Needs nginx and haproxy on PATH (apt-get install nginx haproxy). Results go to
# results/gateways/*-chat-faults.json and *-chat-leave.json. About 30 minutes on a 2-core machine.
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p harness
H=./target/release/harness
COMMON="--target http://127.0.0.1:18080 --requests 400 --workers 8 --slots 4 --repeats 3 --no-progress --workload chat"
NGINX='nginx -p {dir} -c {config} -g "daemon off;"'
HAPROXY='haproxy -db -f {config}'
gw() {
    label=$1; cmd=$2; conf=$3; shift 3
    $H gateway $COMMON --label "$label" --cmd "$cmd" --config-template "examples/gateways/$conf" "$@"
}
both() {
    gw "$1-chat-faults" "$2" "$3" --cells node-refuse,node-reset,node-stall
    gw "$1-chat-leave" "$2" "$3" --cells distribution --leave-after 4 --leave-share 0.5
}
for config in nginx-round-robin nginx-least-conn-retry; do
    both "$config" "$NGINX" "$config.conf"
done
for config in haproxy-roundrobin haproxy-leastconn-check; do
    both "$config" "$HAPROXY" "$config.cfg"
done
gw haproxy-roundrobin-no-delay-chat-leave "$HAPROXY" haproxy-roundrobin-no-delay.cfg \
    --cells distribution --leave-after 4 --leave-share 0.5

#!/bin/sh
# LLM workloads through nginx (round-robin, least_conn, least_conn with retries) and HAProxy
# (roundrobin, leastconn with maxconn 4, leastconn with a health check, roundrobin with
# http-no-delay): streamed chat (64-token prompts, 32-token answers, 5 ms a token, prompts at
# 2,000 tokens/s) through the distribution and heterogeneous cells, and the Azure conversation
# trace's first minute (data/traces/) replayed at its own speed and at 80% of the capacity for
# its mix. 2 nodes with 4 slots each (OLLAMA_NUM_PARALLEL=4), 8 workers, 3 repeats.
# Needs nginx and haproxy on PATH (apt-get install nginx haproxy). Results go to
# results/gateways/*-chat.json, *-trace.json and *-mooncake.json. About an hour and a half on a
# 2-core machine.
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p harness
H=./target/release/harness
COMMON="--target http://127.0.0.1:18080 --requests 2000 --workers 8 --slots 4 --repeats 3 --no-progress"
NGINX='nginx -p {dir} -c {config} -g "daemon off;"'
HAPROXY='haproxy -db -f {config}'
TRACE="--workload trace --trace data/traces/azure-llm-2023-conv.csv --trace-window 60s"
gw() {
    label=$1; cmd=$2; conf=$3; shift 3
    $H gateway $COMMON --label "$label" --cmd "$cmd" --config-template "examples/gateways/$conf" "$@"
}
for config in nginx-round-robin nginx-least-conn nginx-least-conn-retry; do
    gw "$config-chat" "$NGINX" "$config.conf" --workload chat
    gw "$config-trace" "$NGINX" "$config.conf" $TRACE
done
for config in haproxy-roundrobin haproxy-leastconn haproxy-leastconn-check haproxy-roundrobin-no-delay; do
    gw "$config-chat" "$HAPROXY" "$config.cfg" --workload chat
    gw "$config-trace" "$HAPROXY" "$config.cfg" $TRACE
done
# The Mooncake trace's first minute (shared prefix blocks as shared prompt text) on nodes with a
# prompt cache, round-robin against least-connections in each proxy (about 20 minutes more).
MOONCAKE="--workload trace --trace data/traces/mooncake-fast25-synthetic.jsonl --trace-window 60s --prompt-cache"
for config in nginx-round-robin nginx-least-conn; do
    gw "$config-mooncake" "$NGINX" "$config.conf" $MOONCAKE
done
for config in haproxy-roundrobin-no-delay haproxy-leastconn; do
    gw "$config-mooncake" "$HAPROXY" "$config.cfg" $MOONCAKE
done

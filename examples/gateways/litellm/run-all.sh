#!/bin/sh
# Runs harness gateway against the LiteLLM proxy (examples/gateways/litellm/install.sh first):
# every default cell for each routing strategy that can target Ollama nodes, through the
# OpenAI-compatible provider (openai/ against each node's /v1 routes); then the native ollama/
# provider under simple-shuffle and least-busy (distribution and the slow nodes only), and
# streamed chat. The proxy wants a key (sk-bench, in the templates) and speaks only the OpenAI
# dialect, so readiness waits on GET /v1/models. Each result is judged against
# examples/gateways/bounds.json (results/gateways/bounds-litellm.txt). About 45 minutes on a
# 2-core machine. Results go to results/gateways/.
set -eu
cd "$(dirname "$0")/../../.."
cargo build --release -p harness
H=./target/release/harness
COMMON="--target http://127.0.0.1:18080 --api openai --requests 2000 --workers 8 --service 5ms --repeats 3 --no-progress"
ANY="--ready-path /v1/models --ready-timeout 60s --header 'Authorization: Bearer sk-bench'"
gw() {
    name=$1; shift
    eval "$H gateway $COMMON $ANY --label litellm-$name \
        --cmd 'examples/gateways/litellm/run.sh {config} {port}' \
        --config-template examples/gateways/litellm/litellm-$name.yaml $*"
}
for strategy in simple-shuffle least-busy latency-based usage-based-v2 cost-based; do
    gw "$strategy"
done
gw simple-shuffle-ollama-native --cells distribution,heterogeneous
gw least-busy-ollama-native --cells distribution,heterogeneous
# Streamed chat (/v1/chat/completions) through the default strategy.
eval "$H gateway $COMMON $ANY --label litellm-simple-shuffle-streaming \
    --cmd 'examples/gateways/litellm/run.sh {config} {port}' \
    --config-template examples/gateways/litellm/litellm-simple-shuffle.yaml --cells streaming"
for strategy in simple-shuffle least-busy latency-based usage-based-v2 cost-based; do
    $H gate --gateway "results/gateways/litellm-$strategy.json" --bounds examples/gateways/bounds.json || true
done > results/gateways/bounds-litellm.txt
cat results/gateways/bounds-litellm.txt

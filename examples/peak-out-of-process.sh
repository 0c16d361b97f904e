#!/bin/bash
# `harness run peak` against a mock node in another process (zero service time, 128 slots), so the
# harness process's CPU is the client's alone; compare with the in-process run (results/peak.json),
# where the node's threads share the process. Writes results/peak-external/peak.json.
# Usage: examples/peak-out-of-process.sh [repeats]
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p harness -p mock-ollama
REPEATS=${1:-3}
PORT=18190
. examples/mock-node.sh
start_node $PORT --latency 0 --parallel 128 --force-embed-parallel
./target/release/harness run peak --out results/peak-external --repeats "$REPEATS" \
    --node http://127.0.0.1:$PORT

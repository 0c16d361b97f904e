#!/bin/bash
# The load engine against wrk on the same out-of-process target (one mock node, zero service
# time, 64 slots), same connections (8), same machine, alternated: requests/s and client CPU
# time per request (user + system of the load generator's process). Needs wrk on PATH
# (apt-get install wrk). Usage: examples/engine-vs-wrk.sh [runs]
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p harness -p mock-ollama
RUNS=${1:-3}
PORT=18090
. examples/mock-node.sh
start_node $PORT --latency 0 --parallel 64 --force-embed-parallel
LUA=$(mktemp --suffix .lua)
cat > "$LUA" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"model":"all-minilm","input":"load wrk"}'
wrk.headers["Content-Type"] = "application/json"
LUA
URL=http://127.0.0.1:$PORT/api/embed
TIMEFORMAT='%U %S'
for run in $(seq "$RUNS"); do
    out=$( { time wrk -t2 -c8 -d5s -s "$LUA" "$URL" ; } 2>&1 )
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    cpu=$(echo "$out" | tail -1)
    echo "run $run wrk: $rate req/s, cpu(user sys) $cpu s for $reqs requests"
    out=$( { time ./target/release/harness load --url "$URL" --workers 8 --duration 5s ; } 2>&1 )
    echo "run $run engine: $(echo "$out" | head -1); cpu(user sys) $(echo "$out" | tail -1) s"
done

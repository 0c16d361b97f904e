#!/bin/bash
# The load engine against oha (and wrk, when on PATH) on the same out-of-process target, same
# machine, alternated. Part 1: peak requests/s and client CPU per request (user + system time of
# the generator's process) at 8 connections against one mock node with zero service time.
# Part 2: latency at 50% of a node's capacity (1 ms service x 8 slots = 8,000 req/s; 4,000 req/s
# evenly spaced, 16 connections), oha with --latency-correction, the engine measuring from the
# intended send time. Needs oha (cargo install oha; OHA=/path/to/oha). NODE_CPUS=1 LOAD_CPUS=0
# pins the node and the load generators to separate cores (taskset), so neither generator's CPU
# reaches the node. Usage: engine-vs-oha.sh [runs]
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p harness -p mock-ollama
RUNS=${1:-3}
LOAD=${LOAD_CPUS:+taskset -c $LOAD_CPUS}
OHA="$LOAD ${OHA:-oha}"
H="$LOAD ./target/release/harness"
BODY='{"model":"all-minilm","input":"load generator"}'
TIMEFORMAT='%U %S'
. examples/mock-node.sh
cpu_per_request() { # "user sys" seconds, requests
    echo "$1" | awk -v n="$2" '{printf "%.1f", ($1 + $2) * 1e6 / n}'
}
# The node's own time per request (arrival to last byte, from its served log) since entry $1,
# and how the load arrived: prints "p50 p99 next cv busy" (times in ms; cv: the coefficient of
# variation of the gaps between arrivals, about 0 for evenly spaced sends and 1 for Poisson;
# busy: the 99th percentile of requests already in the node when one arrives).
node_time() {
    python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request
since, port = int(sys.argv[1]), sys.argv[2]
entries = []
while True:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/mock/served?since={since}&limit=10000") as r:
        nxt = int(r.headers["x-mock-next"])
        entries += [(e["arrival_ns"], e["end_ns"]) for e in map(json.loads, r.read().splitlines())]
    if nxt == since:
        break
    since = nxt
q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(f * len(xs)))] if xs else float("nan")
times = [(end - arrival) / 1e6 for arrival, end in entries]
arrivals = sorted(a for a, _ in entries)
gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
mean = sum(gaps) / max(1, len(gaps))
cv = (sum((g - mean) ** 2 for g in gaps) / max(1, len(gaps))) ** 0.5 / mean if mean else float("nan")
ends = sorted(e for _, e in entries)
busy, j = [], 0
for i, a in enumerate(arrivals):
    while j < len(ends) and ends[j] <= a:
        j += 1
    busy.append(i - j)
print("%.3f %.3f %d %.2f %d" % (q(times, 0.5), q(times, 0.99), since, cv, q(busy, 0.99)))
PY
}
oha_json() { python3 -c "import json,sys; d=json.load(sys.stdin); s=d['summary']; p=d['latencyPercentiles']; print('%.0f %d %.3f %.3f' % (s['requestsPerSec'], round(s['requestsPerSec']*s['total']), p['p50']*1e3, p['p99']*1e3))"; }

# SKIP_PEAK=1 runs the latency part only.
if [ "${SKIP_PEAK:-}" != 1 ]; then
echo "== peak: 8 connections, 5 s, zero service time"
start_node 18090 --latency 0 --parallel 64 --force-embed-parallel
URL=http://127.0.0.1:18090/api/embed
for run in $(seq "$RUNS"); do
    out=$( { time $OHA --no-tui -z 5s -c 8 -m POST -H 'content-type: application/json' -d "$BODY" --output-format json "$URL" ; } 2>/tmp/oha-time )
    read -r rate n _ _ <<< "$(echo "$out" | oha_json)"
    echo "run $run oha:    $rate req/s, client CPU $(cpu_per_request "$(tail -1 /tmp/oha-time)" "$n") us per request"
    out=$( { time $H load --url "$URL" --body "$BODY" --workers 8 --duration 5s ; } 2>&1 )
    n=$(echo "$out" | head -1 | awk '{print $1}')
    rate=$(echo "$out" | head -1 | sed 's/.*: \([0-9]*\) req\/s.*/\1/')
    echo "run $run engine: $rate req/s, client CPU $(cpu_per_request "$(echo "$out" | tail -1)" "$n") us per request"
    if command -v wrk >/dev/null; then
        LUA=$(mktemp --suffix .lua)
        printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$BODY'" > "$LUA"
        out=$( { time $LOAD wrk -t2 -c8 -d5s -s "$LUA" "$URL" ; } 2>&1 )
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        rate=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
        echo "run $run wrk:    $rate req/s, client CPU $(cpu_per_request "$(echo "$out" | tail -1)" "$n") us per request"
    fi
done
kill $NODE
fi

echo "== latency at 50% of capacity: 1 ms x 8 slots, 4,000 req/s evenly spaced, 16 connections, 5 s"
start_node 18091 --latency 1ms --parallel 8 --force-embed-parallel
URL=http://127.0.0.1:18091/api/embed
SEQ=0
for run in $(seq "$RUNS"); do
    read -r rate n p50 p99 <<< "$($OHA --no-tui -z 5s -c 16 -q 4000 --latency-correction -m POST -H 'content-type: application/json' -d "$BODY" --output-format json "$URL" | oha_json)"
    read -r np50 np99 SEQ cv busy <<< "$(node_time "$SEQ" 18091)"
    echo "run $run oha:    p50 $p50 ms, p99 $p99 ms ($rate req/s); the node's own time p50 $np50 ms, p99 $np99 ms; arrival gaps cv $cv, p99 in the node at arrival $busy"
    # Evenly spaced, as the comparison asks; then Poisson, the engine's burstier schedule.
    for arrivals in constant poisson; do
        out=$($H load --url "$URL" --body "$BODY" --workers 16 --rate 4000 --requests 20000 --arrivals $arrivals)
        read -r np50 np99 SEQ cv busy <<< "$(node_time "$SEQ" 18091)"
        echo "run $run engine ($arrivals): $(echo "$out" | sed 's/.*latency \(p50 [0-9.]* ms, p99 [0-9.]* ms\).*/\1/') ($(echo "$out" | sed 's/.*: \([0-9]*\) req\/s.*/\1/') req/s); the node's own time p50 $np50 ms, p99 $np99 ms; arrival gaps cv $cv, p99 in the node at arrival $busy"
    done
done

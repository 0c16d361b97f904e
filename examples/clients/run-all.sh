#!/bin/sh
# SOLLOL's OllamaPool under `harness client`, every routing strategy it offers, beside the
# official `ollama` Python client with no pool (each worker on one node) and our own pool
# variants (`harness drive`), on the same cells and nodes: the plan's Target 1
# (the two-node cell) and Target 2 (the scaling cell), the spread over equal and unequal nodes,
# a refused node and a node answering 5% with 500, each request audited against the nodes'
# served logs and the library's statistics checked against them.
#
# SOLLOL scans its network for Ollama nodes when it is given none, so everything (the harness,
# its mock nodes and the drivers) runs inside a loopback-only network namespace: `unshare -rn`
# (a user namespace, no root needed; as root `unshare --net` works too), then `ip link set lo up`.
#   HARNESS      the harness binary (default: target/release/harness, built if missing)
#   OUT          the results directory (default: results/)
#   STRATEGIES   SOLLOL strategies to measure (default: all five; empty: none)
#   REFERENCE    1 (default) to measure the ollama client too, 0 not to
#   POOLS        our pool variants to measure (default: atomic mutex-counters mutex-request)
#   CLIENT_ARGS  the harness client flags (default below: the plan's two-node scenario's sizes)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${OPB_IN_NETNS:-}" != 1 ]; then
    [ -x "${HARNESS:-$ROOT/target/release/harness}" ] || (cd "$ROOT" && cargo build --release -p harness)
    PY=$(sh "$ROOT/examples/clients/sollol/install.sh")
    exec unshare -rn env OPB_IN_NETNS=1 OPB_PY="$PY" sh "$0" "$@"
fi
ip link set lo up
HARNESS=${HARNESS:-$ROOT/target/release/harness}
OUT=${OUT:-$ROOT/results}
STRATEGIES=${STRATEGIES-round_robin latency_first least_loaded fairness intelligent}
REFERENCE=${REFERENCE:-1}
POOLS=${POOLS-atomic mutex-counters mutex-request}
CLIENT_ARGS=${CLIENT_ARGS:---nodes 2 --workers 12 --requests 240 --service 20ms --repeats 3 --driver-timeout 300s --cells distribution,heterogeneous,two-node,scaling,node-refuse,node-errors}
for strategy in $STRATEGIES; do
    # shellcheck disable=SC2086 # CLIENT_ARGS is a list of flags
    "$HARNESS" client --label "sollol-$strategy" --out "$OUT" $CLIENT_ARGS \
        --cmd "$OPB_PY $ROOT/examples/clients/sollol/drive.py $strategy"
done
if [ "$REFERENCE" = 1 ]; then
    # shellcheck disable=SC2086
    "$HARNESS" client --label ollama-client --out "$OUT" $CLIENT_ARGS \
        --cmd "$OPB_PY $ROOT/examples/clients/ollama/drive.py"
fi
for variant in $POOLS; do
    # shellcheck disable=SC2086
    "$HARNESS" client --label "pool-$variant" --out "$OUT" $CLIENT_ARGS \
        --cmd "$HARNESS drive --variant $variant --strategy round_robin"
done

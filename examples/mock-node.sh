# Sourced by the example scripts: start_node PORT [mock-ollama flags...] starts one mock node from
# target/release in the background, sets NODE to its pid, kills it when the script exits, and
# returns once it answers GET /api/version (or fails after 5 s). NODE_CPUS=LIST pins the node to
# those cores (taskset -c LIST).
start_node() {
    port=$1; shift
    ${NODE_CPUS:+taskset -c "$NODE_CPUS"} ./target/release/mock-ollama --port "$port" "$@" >/dev/null 2>&1 &
    NODE=$!
    trap 'kill $NODE 2>/dev/null' EXIT
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/api/version" >/dev/null && return 0
        sleep 0.1
    done
    echo "mock-ollama on port $port did not answer" >&2
    return 1
}

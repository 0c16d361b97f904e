#!/bin/sh
# Starts the LiteLLM proxy offline on 127.0.0.1:PORT with CONFIG, one worker, no database:
#   examples/gateways/litellm/run.sh CONFIG PORT [more litellm options]
# The harness passes {config} and {port}. `exec` keeps litellm in the harness's process group.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 CONFIG PORT [litellm options]" >&2; exit 2; }
CONFIG=$1 PORT=$2
shift 2
VENV=${LITELLM_VENV:-$HOME/.cache/ollama-pool-bench/litellm-venv}
[ -x "$VENV/bin/litellm" ] || { echo "$0: no $VENV/bin/litellm; run examples/gateways/litellm/install.sh" >&2; exit 1; }
# Offline: the bundled copies instead of fetching from GitHub at start-up (the model cost map,
# Anthropic beta headers, blog posts, policy templates, auto-router presets), and telemetry vetoed.
export LITELLM_LOCAL_MODEL_COST_MAP=True
export LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True
export LITELLM_LOCAL_BLOG_POSTS=True
export LITELLM_LOCAL_POLICY_TEMPLATES=True
export LITELLM_LOCAL_AUTOROUTER_PRESETS=True
export LITELLM_TELEMETRY_DISABLED=True
# No database: keys other than the master key cannot exist (a wrong key gets 400 "No connected db").
unset DATABASE_URL
# The nodes are on loopback: never send them through an HTTP proxy from the environment.
export NO_PROXY='*' no_proxy='*'
exec "$VENV/bin/litellm" --config "$CONFIG" --port "$PORT" --host 127.0.0.1 --num_workers 1 "$@"

#!/bin/sh
# Installs SOLLOL (the Python Ollama pool library) and the official `ollama` Python client into
# a virtualenv outside the repo and prints the path of the venv's python (the only line on
# stdout; progress goes to stderr). Idempotent: a venv that already has the pinned versions is
# left alone. The same venv runs both drivers: examples/clients/sollol/drive.py and
# examples/clients/ollama/drive.py.
#   SOLLOL_VENV      where the venv goes (default: ~/.cache/ollama-pool-bench/sollol-venv)
#   SOLLOL_VERSION   version to install (default: the pin below; an exact version only)
#   PYTHON           interpreter for the venv (default: python3)
# SOLLOL's full dependency set (ray[default], dask[distributed], flask, fastapi, gevent, bokeh,
# redis, gpustat, ...) is installed as declared, not with --no-deps: `import sollol.pool` runs
# sollol/__init__.py, which imports ray, flask, fastapi, distributed and the rest at import time.
# drive.py switches those parts off at run time. About 1 minute and 615 MB on first install.
# OLLAMA is the version pip resolved for SOLLOL 0.9.66 (which asks for ollama>=0.1.0), pinned
# here so both drivers always run the same client library.
set -eu
PINNED=0.9.66
OLLAMA=0.6.3
VERSION=${SOLLOL_VERSION:-$PINNED}
VENV=${SOLLOL_VENV:-$HOME/.cache/ollama-pool-bench/sollol-venv}
PY=${PYTHON:-python3}
# Three numeric parts exactly: pip reads 0.9 as 0.9.0, which is another release.
if ! printf '%s\n' "$VERSION" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$'; then
    echo "install.sh: SOLLOL_VERSION must be an exact version like $PINNED, not '$VERSION'" >&2
    exit 1
fi
if [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("sollol"), m.version("ollama"))' 2>/dev/null)" = "$VERSION $OLLAMA" ]; then
    echo "install.sh: sollol $VERSION and ollama $OLLAMA already in $VENV" >&2
else
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet "sollol==$VERSION" "ollama==$OLLAMA" >&2
fi
echo "$VENV/bin/python"

#!/bin/sh
# Installs the LiteLLM proxy into a virtualenv outside the repo and prints the path of its
# `litellm` executable (the only line on stdout; progress goes to stderr). Idempotent: a venv
# that already has the pinned version is left alone.
#   LITELLM_VENV      where the venv goes (default: ~/.cache/ollama-pool-bench/litellm-venv)
#   LITELLM_VERSION   version to install (default: the pin below)
#   PYTHON            interpreter for the venv (default: python3; LiteLLM needs >= 3.10)
# prisma (the Python client only; no database is used) is installed too: without it LiteLLM
# answers a request with no API key with 500 instead of 401 (its auth error path imports prisma).
# Known-compromised releases are refused: 1.82.7 and 1.82.8 (credential stealer published
# to PyPI on 2026-03-24, since deleted; BerriAI/litellm#24518) and 1.107.0 (reported as a
# compromised release, e.g. by the PyPI package litellm-check; absent from PyPI: 1.106.12 -> 1.108.0).
# The pin is the newest release whose [proxy] extra resolves from this machine's registry:
# 1.108.8 and later need litellm-enterprise / litellm-proxy-extras / litellm-proxy builds it lacks.
set -eu
PINNED=1.108.7
PRISMA=0.15.0
VERSION=${LITELLM_VERSION:-$PINNED}
VENV=${LITELLM_VENV:-$HOME/.cache/ollama-pool-bench/litellm-venv}
PY=${PYTHON:-python3}
case "$VERSION" in
    1.82.7|1.82.8|1.107.0)
        echo "install.sh: refusing litellm $VERSION: a known-compromised (or withdrawn) release" >&2
        exit 1 ;;
    *[!0-9.]*|'')
        echo "install.sh: LITELLM_VERSION must be an exact version like $PINNED, not '$VERSION'" >&2
        exit 1 ;;
esac
if [ -x "$VENV/bin/litellm" ] &&
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"), m.version("prisma"))' 2>/dev/null)" = "$VERSION $PRISMA" ]; then
    echo "install.sh: litellm $VERSION already in $VENV" >&2
else
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet "litellm[proxy]==$VERSION" "prisma==$PRISMA" >&2
fi
# The 2026-03 payload was a .pth file in site-packages (litellm_init.pth): refuse to go on if one exists.
if find "$VENV/lib" -name 'litellm*.pth' | grep -q .; then
    echo "install.sh: found a litellm*.pth file in $VENV: do not use this venv" >&2
    exit 1
fi
echo "$VENV/bin/litellm"

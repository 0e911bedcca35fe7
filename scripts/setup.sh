#!/usr/bin/env bash
# Creates .venv with every workspace package (editable) and the dev tools, from uv.lock. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never   # only package registries are reachable: use this machine's python3
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5" || python3 -m pip install --quiet --user "uv>=0.5"
    export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --all-packages --frozen --python python3 --quiet --compile-bytecode
# Workers are fresh interpreters: with PYTHONDONTWRITEBYTECODE set (as on these machines) every start would
# recompile the project from source, so compile it once here.
.venv/bin/python -m compileall -q packages/*/src >/dev/null

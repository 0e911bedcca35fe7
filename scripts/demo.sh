#!/usr/bin/env bash
# The README's demo command: sets up the environment, then runs a real workflow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/demo.py

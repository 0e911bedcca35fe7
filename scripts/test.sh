#!/usr/bin/env bash
# The README's test command: sets up the environment, then runs every check and every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=.venv/bin/python
echo "== lint, format, types, layers, workspace consistency"
.venv/bin/ruff check packages tests scripts benchmarks examples
.venv/bin/ruff format --check packages tests scripts benchmarks examples
for pkg in packages/*/; do (cd "$pkg" && ../../.venv/bin/mypy --strict src); done
.venv/bin/lint-imports
$py scripts/check_workspace.py
echo "== each xl-* wheel alone in a fresh venv"
bash scripts/isolation.sh
echo "== benchmark smoke run (ratios are reported, not asserted)"
$py -m benchmarks --quick
echo "== all test suites (real processes, real sockets)"
# pytest exits 5 when it collects no test; set -e turns that, like any failure, into a failed run.
$py -m pytest -q -p no:randomly packages/xl-serial/tests packages/xl-comm/tests packages/xl-spawn/tests \
    packages/executorlib/tests tests

#!/usr/bin/env bash
# The README's test command: sets up the environment, then runs every check and every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Graphviz's dot renders the xl-graph pictures; without it (no root, no apt) those tests fall back or skip.
command -v dot >/dev/null 2>&1 || (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null \
    && apt-get install -y -qq graphviz >/dev/null) || echo "test.sh: graphviz (dot) not installed; its tests skip" >&2
bash scripts/setup.sh
py=.venv/bin/python
echo "== lint, format, types, layers, workspace consistency"
.venv/bin/ruff check packages tests scripts benchmarks examples docs
.venv/bin/ruff format --check packages tests scripts benchmarks examples docs
for pkg in packages/*/; do (cd "$pkg" && ../../.venv/bin/mypy --strict src); done
.venv/bin/lint-imports
$py scripts/check_workspace.py
echo "== each xl-* wheel alone in a fresh venv"
bash scripts/isolation.sh
echo "== pip install executorlib and executorlib[all] from the built wheels, in fresh venvs"
bash scripts/install_check.sh
echo "== SLURM test cluster for tests/slurm (scripts/slurm-cluster.sh; stopped at exit if started here)"
if ! bash scripts/slurm-cluster.sh status >/dev/null 2>&1; then
    slurm_rc=0
    slurm_msg=$(bash scripts/slurm-cluster.sh start 2>&1) || slurm_rc=$?
    echo "$slurm_msg"
    case $slurm_rc in
        0) trap 'bash scripts/slurm-cluster.sh stop' EXIT ;;
        3) export XL_SLURM_UNAVAILABLE="${slurm_msg##*$'\n'}" ;; # cannot run here: tests/slurm skip with this
        *) echo "test.sh: the SLURM test cluster did not start (rc $slurm_rc); tests/slurm will fail" >&2 ;;
    esac
fi
echo "== Flux for tests/flux (scripts/flux-setup.sh: /opt/flux and the bindings in .venv; the tests start the instance)"
flux_rc=0
flux_msg=$(bash scripts/flux-setup.sh 2>&1) || flux_rc=$?
echo "$flux_msg"
case $flux_rc in
    0) ;;
    3) export XL_FLUX_UNAVAILABLE="${flux_msg##*$'\n'}" ;; # cannot run here: tests/flux skip with this
    *)
        echo "test.sh: scripts/flux-setup.sh failed (rc $flux_rc); Flux should work on this machine" >&2
        exit "$flux_rc"
        ;;
esac
# After the SLURM and Flux set-up: the SLURM and Flux pages run against them (skipped only with the reasons above).
echo "== documentation site: every notebook executed, warnings as errors, internal links checked (scripts/docs.sh)"
bash scripts/docs.sh
# After the SLURM and Flux set-up, so the srun, sbatch and flux rows run too.
echo "== benchmark smoke run (ratios are reported, not asserted)"
$py -m benchmarks --quick --timeout 600
echo "== all test suites (real processes, real sockets)"
# pytest exits 5 when it collects no test; set -e turns that, like any failure, into a failed run.
# A fixed hypothesis seed makes this gate reproducible (HYPOTHESIS_SEED=random to draw afresh); a plain
# `pytest` run draws new examples each time, which is where property tests find new cases.
seed=(--hypothesis-seed="${HYPOTHESIS_SEED:-0}")
[ "${HYPOTHESIS_SEED:-0}" = random ] && seed=()
$py -m pytest -q -p no:randomly "${seed[@]}" packages/xl-serial/tests packages/xl-comm/tests packages/xl-spawn/tests \
    packages/xl-graph/tests packages/xl-cache/tests packages/executorlib/tests tests
echo "== the Executor contract suite with every portable fallback forced (XL_PORTABLE=all, README: Platforms)"
XL_PORTABLE=all $py -m pytest -q -p no:randomly "${seed[@]}" -m "not stdlib_reference" \
    tests/contract/test_executor_contract.py

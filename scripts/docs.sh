#!/usr/bin/env bash
# The documentation site: docs/ built with Sphinx into docs/_build/html, warnings as errors, every user-guide
# notebook executed against the real backends (a failing cell fails the build), internal links checked.
#
# Sets up what it needs, as scripts/test.sh does: .venv (setup.sh), Graphviz's dot (the graph pictures), the SLURM
# test cluster (scripts/slurm-cluster.sh; stopped at exit if started here) and Flux (scripts/flux-setup.sh); the
# whole build runs inside `flux start --test-size=2`, so the Flux page talks to a real instance.
# Where SLURM or Flux cannot run (those scripts exit 3: not root, no apt), their page alone is not executed: the
# reason is printed here and shown at the top of that page (XL_SLURM_UNAVAILABLE / XL_FLUX_UNAVAILABLE, the same
# variables that make tests/slurm and tests/flux skip). Any other failure fails the build.
#
# Open docs/_build/html/index.html afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dot >/dev/null 2>&1 || (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null \
    && apt-get install -y -qq graphviz >/dev/null) || echo "docs.sh: graphviz (dot) not installed" >&2
bash scripts/setup.sh

if [ -z "${XL_SLURM_UNAVAILABLE:-}" ] && ! bash scripts/slurm-cluster.sh status >/dev/null 2>&1; then
    slurm_rc=0
    slurm_msg=$(bash scripts/slurm-cluster.sh start 2>&1) || slurm_rc=$?
    echo "$slurm_msg"
    case $slurm_rc in
        0) trap 'bash scripts/slurm-cluster.sh stop' EXIT ;;
        3) export XL_SLURM_UNAVAILABLE="${slurm_msg##*$'\n'}" ;;
        *)
            echo "docs.sh: the SLURM test cluster did not start (rc $slurm_rc); the SLURM page cannot run" >&2
            exit 1
            ;;
    esac
fi

flux=()
if [ -z "${XL_FLUX_UNAVAILABLE:-}" ]; then
    flux_rc=0
    flux_msg=$(bash scripts/flux-setup.sh 2>&1) || flux_rc=$?
    case $flux_rc in
        0) flux=(/opt/flux/bin/flux start --test-size=2) ;;
        3) export XL_FLUX_UNAVAILABLE="${flux_msg##*$'\n'}" ;;
        *)
            echo "$flux_msg"
            echo "docs.sh: scripts/flux-setup.sh failed (rc $flux_rc); Flux should work on this machine" >&2
            exit "$flux_rc"
            ;;
    esac
fi
[ -n "${XL_SLURM_UNAVAILABLE:-}" ] && echo "docs.sh: NOT EXECUTED: the SLURM page ($XL_SLURM_UNAVAILABLE)" >&2
[ -n "${XL_FLUX_UNAVAILABLE:-}" ] && echo "docs.sh: NOT EXECUTED: the Flux page ($XL_FLUX_UNAVAILABLE)" >&2

# -E: read every page again, so every notebook runs; -W --keep-going: all warnings, then fail; -T: the traceback
# of a failing cell on stderr.
rm -rf docs/_build
"${flux[@]}" .venv/bin/python -m sphinx -E -T -W --keep-going -q -b html docs docs/_build/html
.venv/bin/python scripts/check_links.py docs/_build/html
echo "docs.sh: built docs/_build/html/index.html"

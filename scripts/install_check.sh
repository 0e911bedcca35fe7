#!/usr/bin/env bash
# What a user gets from `pip install executorlib` and `pip install "executorlib[all]"` (issue 19, compat-1x §11):
# the six wheels are built as scripts/isolation.sh builds them, then each command runs with plain pip in a fresh
# venv, our wheels from that wheelhouse and the third-party packages from the index, and a short workflow runs.
# - executorlib: the full API (the five xl-* packages come with it), every 1.x extra name declared, and each
#   feature that needs an extra refuses with an ImportError naming it.
# - executorlib[all]: no "does not provide the extra" from pip, every extra's third-party package importable,
#   and the features run (a cluster job script through jinja2, a graph drawn by pygraphviz without dot).
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never PIP_DISABLE_PIP_VERSION_CHECK=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
uv build --all-packages --wheel --out-dir "$work/dist" --quiet
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' packages/executorlib/pyproject.toml)

install() {  # venv name, requirement: a fresh venv with plain pip; fails on a warning about an unknown extra
    local venv="$work/$1"
    python3 -m venv "$venv"
    # ==version picks our wheel (a pre-release) over executorlib 1.x on the index, and --find-links offers the
    # xl-* wheels, which the index does not have.
    "$venv/bin/pip" install --quiet --find-links "$work/dist" "$2" 2>&1 | tee "$work/$1.log"
    if grep -qi "does not provide the extra" "$work/$1.log"; then
        echo "install_check: pip install '$2' names an extra that does not exist" >&2
        exit 1
    fi
    "$venv/bin/pip" check
}

echo "install_check: pip install executorlib==$version"
install core "executorlib==$version"
(cd "$work" && core/bin/python - "$version" <<'EOF')
import importlib.metadata as metadata
import importlib.util
import sys
import tempfile

import executorlib
import executorlib.api

version = sys.argv[1]
assert executorlib.__version__ == version, (executorlib.__version__, version)
for module in (executorlib, executorlib.api):
    for name in module.__all__:
        getattr(module, name)
for package in ("xl-serial", "xl-comm", "xl-spawn", "xl-graph", "xl-cache"):
    metadata.version(package)  # installed with executorlib
extras = set(metadata.metadata("executorlib").get_all("Provides-Extra") or ())
missing = {"cache", "mpi", "cluster", "graph", "graphnotebook", "validation", "all"} - extras
assert not missing, f"executorlib declares no extra(s) {sorted(missing)}"
for optional in ("jinja2", "pysqa", "pygraphviz", "IPython", "pydantic", "mpi4py"):
    assert importlib.util.find_spec(optional) is None, f"pip install executorlib brought {optional}"

from executorlib import SingleNodeExecutor, SlurmClusterExecutor, get_cache_data  # noqa: E402
from executorlib.api import TestClusterExecutor  # noqa: E402

with tempfile.TemporaryDirectory() as scratch:
    with SingleNodeExecutor(max_cores=2, cache_directory=f"{scratch}/cache") as exe:
        total = exe.submit(sum, [1, 2])
        assert exe.submit(pow, total, 2).result(timeout=120) == 9  # a Future as an argument
        try:
            exe.submit(sum, [1], resource_dict={"cores": 2})
            raise AssertionError("an MPI task without mpi4py was accepted")
        except ImportError as missing_mpi:
            assert 'executorlib[mpi]' in str(missing_mpi), missing_mpi
    assert len(get_cache_data(f"{scratch}/cache")) == 2
    with TestClusterExecutor(cache_directory=f"{scratch}/files") as exe:
        assert exe.submit(sum, [2, 3]).result(timeout=120) == 5
    with SlurmClusterExecutor(cache_directory=f"{scratch}/slurm") as exe:  # the built-in job script: no jinja2
        assert "#SBATCH --ntasks=1" in exe.dry_run(sum, [1, 2])
        try:
            exe.dry_run(sum, [1, 2], resource_dict={"submission_template": "{{ command }}"})
            raise AssertionError("a submission_template without jinja2 was accepted")
        except ImportError as missing_cluster:
            assert 'executorlib[cluster]' in str(missing_cluster), missing_cluster
print("install_check: executorlib alone gives the full API; missing extras are named")
EOF

echo "install_check: pip install \"executorlib[all]==$version\""
install all "executorlib[all]==$version"
(cd "$work" && all/bin/python - <<'EOF')
import importlib.util
import os
import sys
import tempfile

for optional in ("h5py", "networkx", "jinja2", "pysqa", "pygraphviz", "IPython", "pydantic", "mpi4py"):
    assert importlib.util.find_spec(optional) is not None, f'pip install "executorlib[all]" did not bring {optional}'

from executorlib import SingleNodeExecutor, SlurmClusterExecutor  # noqa: E402

with tempfile.TemporaryDirectory() as scratch:
    with SlurmClusterExecutor(cache_directory=f"{scratch}/slurm") as exe:  # the job script, nothing submitted
        script = exe.dry_run(sum, [1, 2], resource_dict={"partition": "debug", "submission_template": (
            "#!/bin/bash\n#SBATCH --partition={{partition}}\n{{command}}\n"
        )})
        assert "#SBATCH --partition=debug" in script and "xl_cache.worker" in script, script
    picture = f"{scratch}/graph.png"
    exe = SingleNodeExecutor(plot_dependency_graph_filename=picture)
    exe.submit(pow, exe.submit(sum, [1, 2]), 2)
    os.environ["PATH"] = os.path.dirname(sys.executable)  # no Graphviz dot: pygraphviz draws
    exe.shutdown()
    with open(picture, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
print("install_check: executorlib[all] brings every extra and its features run")
EOF

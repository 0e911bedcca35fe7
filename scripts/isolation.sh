#!/usr/bin/env bash
# Each xl-* wheel installs alone in a fresh venv (only its declared dependencies) and passes its own tests there,
# run against the installed wheel, not the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
uv build --all-packages --wheel --out-dir "$work/dist" --quiet
wheel() { ls "$work"/dist/"$(echo "$1" | tr - _)"-*.whl; }
test_deps=(pytest pytest-timeout hypothesis numpy psutil)
extra_test_deps() {  # what a package's tests need beyond test_deps (never what the package itself needs)
    case $1 in
        # jinja2, pyyaml: the job-script builders and the pysqa queue.yaml reader run for real (both come with
        # the package's [pysqa] extra)
        xl-spawn) echo pyzmq jinja2 pyyaml ;;
        # matplotlib: the picture fallback runs for real here (the workspace venv has no matplotlib)
        xl-graph) echo jsonschema matplotlib ;;
        # pandas: to_dataframe() runs for real (it is the package's optional extra, not a dependency)
        xl-cache) echo pandas ;;
    esac
}
check() {  # package, siblings it depends on, modules that must NOT be installed by it
    local pkg=$1 siblings=$2 banned=$3 venv="$work/venv-$1"
    uv venv --quiet --python python3 "$venv"
    local wheels=("$(wheel "$pkg")")
    for s in $siblings; do wheels+=("$(wheel "$s")"); done
    uv pip install --quiet --python "$venv/bin/python" "${wheels[@]}"
    for mod in $banned; do
        if "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)"; then
            echo "isolation: installing $pkg alone pulled in $mod" >&2; exit 1
        fi
    done
    "$venv/bin/python" -c "import $(echo "$pkg" | tr - _) as m; print('isolation:', m.__name__, m.__version__, 'imports alone')"
    # shellcheck disable=SC2046  # word splitting of the extra list is intended
    uv pip install --quiet --python "$venv/bin/python" "${test_deps[@]}" $(extra_test_deps "$pkg")
    cp -r "packages/$pkg/tests" "$work/tests-$pkg"
    (cd "$work" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -o timeout=120 -o timeout_method=thread -o faulthandler_timeout=110 \
        --rootdir "$work/tests-$pkg" "$work/tests-$pkg")
}
check xl-serial "" "zmq h5py executorlib xl_comm"
check xl-spawn "" "zmq cloudpickle xl_serial executorlib"
check xl-comm "xl-serial" "h5py executorlib xl_spawn"
check xl-graph "" "zmq cloudpickle h5py xl_serial executorlib"
check xl-cache "xl-serial" "zmq executorlib xl_comm xl_spawn"

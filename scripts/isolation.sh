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
    uv pip install --quiet --python "$venv/bin/python" "${test_deps[@]}" $( [ "$pkg" = xl-spawn ] && echo pyzmq )
    cp -r "packages/$pkg/tests" "$work/tests-$pkg"
    (cd "$work" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -o timeout=120 -o faulthandler_timeout=110 \
        --rootdir "$work/tests-$pkg" "$work/tests-$pkg")
}
check xl-serial "" "zmq h5py executorlib xl_comm"
check xl-spawn "" "zmq cloudpickle xl_serial executorlib"
check xl-comm "xl-serial" "h5py executorlib xl_spawn"

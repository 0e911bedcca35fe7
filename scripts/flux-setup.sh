#!/usr/bin/env bash
# Flux for the tests: installs flux-core into /opt/flux with the shared installer and makes its python bindings
# importable in .venv (a .pth file; notes/flux.md, way (a)). Idempotent; a few seconds when flux is installed.
#
# The installer is ../shared/tools/flux-install.sh next to this checkout (CI clones the repository somewhere
# unknown beside shared/), else /work/shared/tools/flux-install.sh.
#
# Exit status: 0 flux works and `import flux.job` works in .venv; 3 flux cannot run on this machine (the last
# line of output says why; scripts/test.sh exports it as XL_FLUX_UNAVAILABLE and the flux tests skip with it);
# anything else: a failure that must fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/opt/flux # the prebuilt tree is not relocatable

cannot() {
    echo "flux-setup: cannot: $*"
    exit 3
}

installer=""
for candidate in "$PWD/../shared/tools/flux-install.sh" /work/shared/tools/flux-install.sh; do
    if [ -f "$candidate" ]; then
        installer=$candidate
        break
    fi
done
[ -n "$installer" ] || cannot "no flux installer at $PWD/../shared/tools/flux-install.sh or /work/shared/tools/flux-install.sh"

rc=0
out=$(bash "$installer" 2>&1) || rc=$?
printf '%s\n' "$out"
case $rc in
    0) ;;
    3)
        last=${out##*$'\n'}
        cannot "${last#flux-install: cannot: }"
        ;;
    *)
        echo "flux-setup: $installer failed with exit status $rc (output above)" >&2
        exit 1
        ;;
esac

[ -x .venv/bin/python ] || {
    echo "flux-setup: .venv/bin/python is missing: run scripts/setup.sh first" >&2
    exit 1
}
# The bindings are compiled for the python that built flux (3.11); another version cannot load them.
bindings=$(ls -d "$PREFIX"/lib/python3.*/site-packages 2>/dev/null | head -n1)
[ -n "$bindings" ] || {
    echo "flux-setup: no python bindings under $PREFIX/lib/python3.*/site-packages" >&2
    exit 1
}
flux_py=$(basename "$(dirname "$bindings")") # python3.11
venv_py=$(.venv/bin/python -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
[ "$flux_py" = "$venv_py" ] || cannot "the flux bindings in $PREFIX are for $flux_py, .venv runs $venv_py"
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$bindings" >"$site/flux-opt.pth"
if ! err=$(.venv/bin/python -c 'import flux, flux.job' 2>&1); then
    echo "$err" >&2
    echo "flux-setup: .venv cannot import flux.job through $site/flux-opt.pth (cffi, ply and pyyaml come from" \
        "the dev group: run scripts/setup.sh)" >&2
    exit 1
fi
echo "flux-setup: OK: $("$PREFIX/bin/flux" version | head -n1 | tr -s ' \t' ' '); .venv imports flux from $bindings"

"""Regenerate ``tests/compat/snapshot-1.11.0.json``: the public surface of the released executorlib 1.11.0.

``python scripts/compat_snapshot.py`` makes a scratch venv, installs ``executorlib==1.11.0`` into it with pip, and
runs this file there with ``--describe``, which prints every public name of ``executorlib`` and
``executorlib.api`` (their ``__all__`` and the other public names defined by executorlib, e.g.
``terminate_task_in_cache``) with, for each callable, its parameters: position, kind and default (as repr). Public
methods of classes are described too (``executorlib.api.SocketInterface.send_dict``). ``--venv DIR`` reuses a
venv that has executorlib 1.11.0 already; ``--output`` writes elsewhere.

``tests/compat/test_signatures.py`` describes our executorlib with the same :func:`describe` and compares.
Only the standard library is used here, so the describing half runs in any venv.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERSION = "1.11.0"
MODULES = ("executorlib", "executorlib.api")
SNAPSHOT = Path(__file__).resolve().parent.parent / "tests" / "compat" / f"snapshot-{VERSION}.json"
NO_DEFAULT = None  # a parameter without a default; a default of None is the string "None"


def default_text(value: Any) -> str | None:
    """The default as the snapshot keeps it: repr, but classes and functions by name (their modules moved)."""
    if value is inspect.Parameter.empty:
        return NO_DEFAULT
    if isinstance(value, type):
        return f"<class {value.__qualname__}>"
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType):
        return f"<function {value.__qualname__}>"
    return repr(value)


def parameters(fn: Callable[..., Any]) -> list[dict[str, Any]] | None:
    """Each parameter's name, position, kind and default; None when there is no signature to read."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [
        {"name": p.name, "position": index, "kind": p.kind.name, "default": default_text(p.default)}
        for index, p in enumerate(signature.parameters.values())
    ]


def describe_object(value: Any, in_all: bool) -> dict[str, Any]:
    if isinstance(value, type):
        kind = "class"
    elif callable(value):
        kind = "function"
    else:
        kind = "other"
    entry: dict[str, Any] = {"kind": kind, "in_all": in_all}
    if kind != "other":
        entry["parameters"] = parameters(value)
    return entry


def public_names(module: types.ModuleType) -> tuple[list[str], list[str]]:
    """``__all__``, and the other public names that executorlib itself defines (not re-exported typing names,
    not submodules)."""
    listed = list(getattr(module, "__all__", []))
    others = []
    for name in dir(module):
        if name.startswith("_") or name in listed:
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            continue
        if str(getattr(value, "__module__", "")).split(".")[0] == "executorlib":
            others.append(name)
    return listed, others


def describe() -> dict[str, Any]:
    """The public surface of the executorlib importable here."""
    import importlib

    names: dict[str, Any] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        listed, others = public_names(module)
        for name in [*listed, *others]:
            value = getattr(module, name)
            names[f"{module_name}.{name}"] = describe_object(value, name in listed)
            if isinstance(value, type):
                for attribute in dir(value):
                    if attribute.startswith("_"):
                        continue
                    static = inspect.getattr_static(value, attribute)
                    if isinstance(static, property):
                        names[f"{module_name}.{name}.{attribute}"] = {"kind": "property", "in_all": False}
                    elif callable(getattr(value, attribute)):
                        described = describe_object(getattr(value, attribute), False)
                        names[f"{module_name}.{name}.{attribute}"] = {**described, "kind": "method"}
    return names


def make_venv(directory: Path) -> Path:
    python = directory / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"executorlib=={VERSION}"], check=True)
    return python


def snapshot_from(python: Path) -> dict[str, Any]:
    found = subprocess.run(
        [str(python), "-c", "import executorlib; print(executorlib.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if found != VERSION:
        raise SystemExit(f"{python} has executorlib {found}, not {VERSION}: give a venv with executorlib=={VERSION}")
    out = subprocess.run([str(python), __file__, "--describe"], check=True, capture_output=True, text=True).stdout
    return {"version": VERSION, "names": json.loads(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--describe", action="store_true", help="print this interpreter's executorlib as JSON")
    parser.add_argument("--venv", type=Path, help=f"a venv with executorlib=={VERSION} (default: make one)")
    parser.add_argument("--output", type=Path, default=SNAPSHOT, help="where to write the snapshot")
    args = parser.parse_args(argv)
    if args.describe:
        json.dump(describe(), sys.stdout, indent=1, sort_keys=True)
        return 0
    if args.venv is not None:
        snapshot = snapshot_from(args.venv / "bin" / "python")
    else:
        with tempfile.TemporaryDirectory(prefix="executorlib-1x-") as scratch:
            snapshot = snapshot_from(make_venv(Path(scratch)))
    args.output.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output}: {len(snapshot['names'])} names of executorlib {VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

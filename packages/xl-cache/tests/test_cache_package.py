"""Public names, version, import cost, and keys that two interpreter runs share."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import xl_cache


def test_public_names() -> None:
    for name in xl_cache.__all__:
        assert getattr(xl_cache, name) is not None
        assert name in dir(xl_cache)
    assert xl_cache.__version__ == "0.1.0"
    assert issubclass(xl_cache.CacheCorruptError, xl_cache.CacheError)
    assert issubclass(xl_cache.CacheVersionError, xl_cache.CacheError)
    assert issubclass(xl_cache.CachePendingError, xl_cache.CacheError)


def test_unknown_name() -> None:
    try:
        xl_cache.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def _imported_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'xl_serial', 'xl_comm', 'xl_spawn', 'xl_graph', 'executorlib', 'zmq', 'h5py', 'pandas'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return eval(out.stdout)  # type: ignore[no-any-return]


def test_imports_are_lazy_and_never_reach_zmq_or_siblings() -> None:
    assert _imported_after("import xl_cache") == []
    assert _imported_after("from xl_cache import CacheError") == []
    assert _imported_after("from xl_cache import load_result, get_cache_data") == ["h5py", "xl_serial"]


_SCRIPT = textwrap.dedent(
    """
    import sys
    import xl_cache
    from xl_serial import task_key

    def simulate(n, *, tags):
        return sum(range(n)) if "fast" in tags else -1

    key = task_key(simulate, (10,), {"tags": {"fast", "exact", "cpu"}})
    if xl_cache.load_result(sys.argv[1], key) is None:
        xl_cache.write_output(sys.argv[1], key, simulate, (10,), {"tags": {"fast"}}, output=simulate(10, tags={"fast"}))
        print("miss", key)
    else:
        print("hit", key)
    """
)


def test_two_interpreter_runs_of_one_script_hit_the_same_key(tmp_path: Path) -> None:
    script = tmp_path / "workflow.py"
    script.write_text(_SCRIPT)
    runs = []
    for seed in ("1", "2"):  # different hash seeds: set order differs between the runs
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            timeout=120,
            env={**__import__("os").environ, "PYTHONHASHSEED": seed},
        )
        assert done.returncode == 0, done.stderr
        runs.append(done.stdout.split())
    assert runs[0][0] == "miss" and runs[1][0] == "hit"
    assert runs[0][1] == runs[1][1]

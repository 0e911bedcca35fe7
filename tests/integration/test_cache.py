"""The result cache of SingleNodeExecutor (``cache_directory``, per-task ``cache_key``), end to end.

A hit completes the Future without handing the task to the scheduler (so no worker starts); a success is
written to ``<key>_o.h5`` before its Future completes; a failure is not cached (executorlib 1.x semantics); the
key is taken after Future arguments were replaced by their values, so dependencies hit too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from xl_test_helpers import add, raise_value_error, touch_and_add

TIMEOUT = 60


def _record_scheduler_submits(monkeypatch: pytest.MonkeyPatch, exe: Any) -> list[Any]:
    """What the executor hands to its scheduler from now on (a cache hit hands nothing)."""
    handed: list[Any] = []
    real = exe._scheduler.submit

    def submit(*call: Any) -> None:
        handed.append(call)
        real(*call)

    monkeypatch.setattr(exe._scheduler, "submit", submit)
    return handed


def test_a_hit_starts_no_worker(executor_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    marker = tmp_path / "ran"
    exe = executor_factory(cache_directory=str(cache))
    assert exe.submit(touch_and_add, str(marker), 1, 2).result(timeout=TIMEOUT) == 3
    assert marker.exists() and len(list(cache.glob("touch_and_add*_o.h5"))) == 1
    marker.unlink()
    handed = _record_scheduler_submits(monkeypatch, exe)
    future = exe.submit(touch_and_add, str(marker), 1, 2)
    assert future.done() and future.result(timeout=0) == 3
    assert handed == [] and not marker.exists()
    assert exe.submit(touch_and_add, str(marker), 2, 2).result(timeout=TIMEOUT) == 4  # another call: a miss
    assert len(handed) == 1 and marker.exists()


def test_cache_key_names_the_entry(make_executor: Any, tmp_path: Path) -> None:
    from executorlib import get_cache_data, get_future_from_cache

    cache = tmp_path / "cache"
    exe = make_executor(cache_directory=str(cache))
    assert exe.submit(add, 1, 2, resource_dict={"cache_key": "sum-run"}).result(timeout=TIMEOUT) == 3
    # the key replaces the hash: another call with the same key gets the stored result
    assert exe.submit(add, 5, 5, resource_dict={"cache_key": "sum-run"}).result(timeout=TIMEOUT) == 3
    assert (cache / "sum-run_o.h5").exists()
    [record] = get_cache_data(str(cache))
    assert record["output"] == 3 and record["input_args"] == (1, 2) and record["function"] is add
    assert record["filename"] == str(cache / "sum-run_o.h5") and record["runtime"] >= 0
    assert get_future_from_cache(str(cache), "sum-run").result(timeout=0) == 3


def test_a_failure_is_not_cached(executor_factory: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    exe = executor_factory(cache_directory=str(cache))
    first = exe.submit(raise_value_error, "no")
    assert isinstance(first.exception(timeout=TIMEOUT), ValueError)
    assert not cache.exists() or list(cache.iterdir()) == []
    again = exe.submit(raise_value_error, "no")  # runs again: a fresh failure, not a stored one
    assert isinstance(again.exception(timeout=TIMEOUT), ValueError)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_dependencies_are_keyed_by_their_values_and_hit(make_executor: Any, tmp_path: Path) -> None:
    from xl_serial import task_key

    cache = tmp_path / "cache"
    first_marker, second_marker = tmp_path / "first", tmp_path / "second"
    exe = make_executor(cache_directory=str(cache))
    a = exe.submit(touch_and_add, str(first_marker), 1, 2)
    b = exe.submit(touch_and_add, str(second_marker), a, 10)
    assert b.result(timeout=TIMEOUT) == 13
    assert (cache / f"{task_key(touch_and_add, (str(second_marker), 3, 10), {})}_o.h5").exists()
    first_marker.unlink()
    second_marker.unlink()
    again = make_executor(cache_directory=str(cache))
    a2 = again.submit(touch_and_add, str(first_marker), 1, 2)
    b2 = again.submit(touch_and_add, str(second_marker), a2, 10)
    assert b2.result(timeout=TIMEOUT) == 13
    assert not first_marker.exists() and not second_marker.exists()


def test_per_task_cache_directory_and_keys_in_a_pool(make_executor: Any, tmp_path: Path) -> None:
    exe = make_executor(max_workers=1, block_allocation=True)  # no executor-wide cache
    own = tmp_path / "own"
    assert (
        exe.submit(add, 2, 3, resource_dict={"cache_directory": str(own), "cache_key": "k"}).result(timeout=TIMEOUT)
        == 5
    )
    assert (own / "k_o.h5").exists()
    assert exe.submit(add, 2, 3).result(timeout=TIMEOUT) == 5  # uncached tasks are untouched
    assert [p.name for p in own.iterdir()] == ["k_o.h5"]


def test_created_cache_directories_are_private(make_executor: Any, tmp_path: Path) -> None:
    cache = tmp_path / "deep" / "cache"
    make_executor(cache_directory=str(cache)).submit(add, 1, 1).result(timeout=TIMEOUT)
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    assert oct((tmp_path / "deep").stat().st_mode & 0o777) == oct(0o700)


def test_an_executor_wide_cache_key_is_rejected(make_executor: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cache_key.*per call"):
        make_executor(cache_directory=str(tmp_path), resource_dict={"cache_key": "one"})


def test_a_damaged_entry_fails_its_future_with_the_path(make_executor: Any, tmp_path: Path) -> None:
    from xl_cache import CacheCorruptError

    (tmp_path / "broken_o.h5").write_bytes(b"not hdf5")
    exe = make_executor(cache_directory=str(tmp_path))
    error = exe.submit(add, 1, 1, resource_dict={"cache_key": "broken"}).exception(timeout=TIMEOUT)
    assert isinstance(error, CacheCorruptError) and "broken_o.h5" in str(error)


_SCRIPT = textwrap.dedent(
    """
    import sys
    from executorlib import SingleNodeExecutor


    def simulate(n, log):
        with open(log, "a") as stream:
            stream.write("ran\\n")
        return n * n


    def fails(log):
        with open(log, "a") as stream:
            stream.write("failed\\n")
        raise RuntimeError("always")


    if __name__ == "__main__":
        cache, log = sys.argv[1], sys.argv[2]
        with SingleNodeExecutor(cache_directory=cache) as exe:
            first = exe.submit(simulate, 7, log)
            second = exe.submit(simulate, first, log)
            failure = exe.submit(fails, log)
            print(first.result(timeout=60), second.result(timeout=60), type(failure.exception(timeout=60)).__name__)
    """
)


def test_a_second_interpreter_run_hits_the_cache(tmp_path: Path) -> None:
    script = tmp_path / "workflow.py"
    script.write_text(_SCRIPT)
    log = tmp_path / "runs.log"
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "cache"), str(log)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.splitlines()[0])
    assert outputs == ["49 2401 RuntimeError", "49 2401 RuntimeError"]
    # two successes ran once; the failure ran in both runs
    assert log.read_text().splitlines().count("ran") == 2
    assert log.read_text().splitlines().count("failed") == 2


class _Planted:
    """Unpickling it touches ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.marker,))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("kind", ["single", "test_cluster"])
def test_another_users_planted_result_is_refused(make_executor: Any, tmp_path: Path, kind: str) -> None:
    """A world-writable sticky cache directory (shared scratch): another user's ``_o.h5`` is never unpickled."""
    import xl_cache
    from executorlib.api import TestClusterExecutor

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    os.chmod(scratch, 0o1777)
    marker = tmp_path / "ran"
    planted = Path(xl_cache.write_output(scratch, "planted", add, (1, 1), output=_Planted(marker)))
    os.chown(planted, 12345, 12345)
    if kind == "single":
        exe = make_executor(cache_directory=str(scratch))
    else:
        exe = TestClusterExecutor(cache_directory=str(scratch))
    with exe:
        error = exe.submit(add, 1, 1, resource_dict={"cache_key": "planted"}).exception(timeout=TIMEOUT)
        assert exe.submit(add, 2, 2, resource_dict={"cache_key": "ours"}).result(timeout=TIMEOUT) == 4
    assert not marker.exists(), "the planted pickle ran"
    assert isinstance(error, xl_cache.CacheTrustError)
    assert str(planted) in str(error) and "uid 12345" in str(error)


def test_an_unwritable_cache_directory_warns_once_and_still_returns(executor_factory: Any, tmp_path: Path) -> None:
    """A directory under a regular file cannot be created, even by root: results come back, uncached, and the
    user is told once (not once per task) which directory, why, and what to do."""
    import warnings

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = blocker / "cache"
    exe = executor_factory(cache_directory=str(cache))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3
        assert exe.submit(add, 2, 2).result(timeout=TIMEOUT) == 4
    mine = [w for w in caught if str(cache) in str(w.message)]
    assert len(mine) == 1, [str(w.message) for w in caught]
    message = str(mine[0].message)
    assert "not cached" in message and "cache_directory" in message  # what happened, and the fix
    assert "Not a directory" in message or "File exists" in message  # the reason, from the OS

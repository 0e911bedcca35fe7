"""``shutdown(wait=False)`` in file mode as in executorlib 1.x (compat-1x.md §6), with real local processes.

Detaching cancels the Futures without stopping the jobs; the jobs write their outputs, and a later executor on the
same cache directory gets the results without running the calls again. The test waits for a process's end on its
pidfd (no polling).
"""

from __future__ import annotations

import os
import select
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

TIMEOUT = 60


def slow_seven(marker: str, seconds: float) -> int:
    with open(marker, "a") as handle:
        handle.write("ran\n")
    time.sleep(seconds)
    return 7


def add(a: int, b: int) -> int:
    return a + b


def _pid_of(cache: Path, prefix: str) -> int:
    """The pid of the running task whose key starts with ``prefix`` (its ``<key>/queue_id``, written before
    ``submit`` returned)."""
    [folder] = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith(prefix)]
    return int((folder / "queue_id").read_text())


def _wait_for_end(pid: int, timeout: float = TIMEOUT) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable, f"process {pid} still runs after {timeout} s"
    finally:
        os.close(fd)


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_detaching_cancels_the_futures_and_the_job_goes_on(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor

    cache, marker = tmp_path / "cache", tmp_path / "ran"
    exe = TestClusterExecutor(cache_directory=str(cache))
    done_before = exe.submit(add, 1, 2)
    assert done_before.result(timeout=TIMEOUT) == 3
    future = exe.submit(slow_seven, str(marker), 1.0)
    dependent = exe.submit(add, future, 1)
    pid = _pid_of(cache, "slow_seven")
    exe.shutdown(wait=False)
    assert future.done() and future.cancelled() and dependent.cancelled()
    with pytest.raises(CancelledError):
        future.result(timeout=0)
    assert done_before.result(timeout=0) == 3  # what was done stays done
    assert _runs(pid)  # not stopped
    _wait_for_end(pid)
    [output] = [p for p in cache.glob("slow_seven*_o.h5")]
    assert output.is_file() and not (cache / output.name.replace("_o.h5", "")).exists()

    with TestClusterExecutor(cache_directory=str(cache)) as again:
        cached = again.submit(slow_seven, str(marker), 1.0)
        assert cached.done() and cached.result(timeout=0) == 7  # from the cache, without a rerun
    assert marker.read_text() == "ran\n"


def test_the_constructors_wait_false_detaches_at_the_end_of_the_with_block(tmp_path: Path) -> None:
    from executorlib import get_future_from_cache
    from executorlib.api import TestClusterExecutor

    cache, marker = tmp_path / "cache", tmp_path / "ran"
    with TestClusterExecutor(cache_directory=str(cache), wait=False) as exe:
        future = exe.submit(slow_seven, str(marker), 0.5, resource_dict={"cache_key": "seven"})
        pid = _pid_of(cache, "seven")
    assert future.cancelled()
    _wait_for_end(pid)
    assert get_future_from_cache(str(cache), "seven").result(timeout=0) == 7


@pytest.mark.parametrize("wait", [False, True])
def test_cancel_futures_stops_the_jobs(tmp_path: Path, wait: bool) -> None:
    from executorlib.api import TestClusterExecutor

    cache, marker = tmp_path / "cache", tmp_path / "ran"
    exe = TestClusterExecutor(cache_directory=str(cache))
    future = exe.submit(slow_seven, str(marker), 600)
    pid = _pid_of(cache, "slow_seven")
    start = time.monotonic()
    exe.shutdown(wait=wait, cancel_futures=True)
    assert future.cancelled()
    _wait_for_end(pid, timeout=10)  # stopped: a 600 s task ends within the terminate grace time
    assert time.monotonic() - start < 10
    # shutdown(wait=False) returned before the job's end was handled (its task file is removed then): a second
    # shutdown waits for that, as it waits for everything the executor still does
    exe.shutdown(wait=True)
    assert not list(cache.glob("*_o.h5")) and not list(cache.glob("*_i.h5"))


def test_a_cancelling_shutdown_after_a_detach_stops_the_jobs_left_running(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor

    cache, marker = tmp_path / "cache", tmp_path / "ran"
    exe = TestClusterExecutor(cache_directory=str(cache))
    exe.submit(slow_seven, str(marker), 600)
    pid = _pid_of(cache, "slow_seven")
    exe.shutdown(wait=False)
    assert _runs(pid)
    exe.shutdown(wait=True, cancel_futures=True)
    _wait_for_end(pid, timeout=10)

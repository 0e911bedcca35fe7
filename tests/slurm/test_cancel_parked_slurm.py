"""Cancelling tasks parked on a Future that never completes, on the real cluster (issue 14, items 3 and 4), and a
call submitted again while the job of its cancelled twin is being stopped.

SlurmJobExecutor (srun steps, per call and as a pool) and SlurmClusterExecutor (sbatch jobs in file mode, and a
pool of worker jobs): cancelling the waiting task, directly or through ``shutdown(cancel_futures=True)``, must
release it, so that ``shutdown(wait=True)`` returns. Every wait is bounded.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

import pytest
from xl_slurm_helpers import SlurmCluster
from xl_test_helpers import call_bounded

SHUTDOWN = 60
KINDS = ["job-per-call", "job-block", "cluster-file", "cluster-block"]


def add(a: int, b: int) -> int:
    return a + b


def sleep_and_return(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def slow_once(marker: str, value: Any) -> Any:
    """The first run says so in ``marker`` and sleeps; a later run returns at once."""
    if Path(marker).exists():
        return value
    Path(marker).write_text("running")
    time.sleep(300)
    return None


def build(kind: str, cache: Path) -> Any:
    from executorlib import SlurmClusterExecutor, SlurmJobExecutor

    if kind == "job-per-call":
        return SlurmJobExecutor(max_workers=1)
    if kind == "job-block":
        return SlurmJobExecutor(max_workers=1, block_allocation=True)
    return SlurmClusterExecutor(
        cache_directory=str(cache),
        max_workers=1 if kind == "cluster-block" else None,
        block_allocation=kind == "cluster-block",
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["future.cancel", "shutdown-cancel_futures"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_cancelled_task_parked_on_a_never_completing_future_is_released(
    slurm_cluster: SlurmCluster, tmp_path: Path, kind: str, how: str
) -> None:
    exe = build(kind, tmp_path / "cache")
    try:
        never: Future[Any] = Future()
        dependent = exe.submit(add, never, 1)
        downstream = exe.submit(add, dependent, 1)
        if how == "future.cancel":
            assert dependent.cancel()
        else:
            call_bounded(
                lambda: exe.shutdown(wait=True, cancel_futures=True), SHUTDOWN, what="shutdown(cancel_futures=True)"
            )
        call_bounded(lambda: exe.shutdown(wait=True), SHUTDOWN, what="shutdown(wait=True), as at exit")
        assert dependent.cancelled() and downstream.cancelled()
        assert not wait([dependent, downstream], timeout=0).not_done
    finally:
        exe.shutdown(wait=False, cancel_futures=True)


@pytest.mark.timeout(240)
def test_cluster_cancel_futures_with_running_and_waiting_jobs_sets_each_future_once(
    slurm_cluster: SlurmCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from executorlib import SlurmClusterExecutor

    exe = SlurmClusterExecutor(cache_directory=str(tmp_path / "cache"))
    try:
        never: Future[Any] = Future()
        running = exe.submit(sleep_and_return, 300, 1)
        futures = [running, exe.submit(add, running, 1), exe.submit(add, never, 1), exe.submit(add, running, never)]
        with caplog.at_level(logging.DEBUG):
            call_bounded(
                lambda: exe.shutdown(wait=True, cancel_futures=True), SHUTDOWN, what="shutdown(cancel_futures=True)"
            )
        assert all(f.cancelled() for f in futures), futures
        assert not wait(futures, timeout=0).not_done
        assert "unexpected state" not in caplog.text
    finally:
        exe.shutdown(wait=False, cancel_futures=True)


@pytest.mark.timeout(240)
def test_the_same_call_submitted_while_its_cancelled_job_ends_gets_its_result(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The second call shares the job being cancelled: that job is submitted again for it, and the job of a
    dependent submitted meanwhile (afterok on the cancelled job, so it never runs) too."""
    from executorlib import SlurmClusterExecutor

    marker = tmp_path / "running"
    exe = SlurmClusterExecutor(cache_directory=str(tmp_path / "cache"))
    try:
        first = exe.submit(slow_once, str(marker), 7)
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the first job never started"
        assert first.cancel()
        again = exe.submit(slow_once, str(marker), 7)
        dependent = exe.submit(add, again, 1)
        assert again.result(timeout=120) == 7 and dependent.result(timeout=120) == 8
        assert first.cancelled()
        call_bounded(lambda: exe.shutdown(wait=True), SHUTDOWN, what="shutdown(wait=True)")
    finally:
        exe.shutdown(wait=False, cancel_futures=True)

"""terminate_tasks_in_cache for TestClusterExecutor's local processes: their pid is in the queue-id sidecar."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

import pytest

TIMEOUT = 60


def sleep_long(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.mark.timeout(120)
def test_terminate_stops_a_local_process_left_running(tmp_path: Path) -> None:
    import xl_cache
    from executorlib import terminate_tasks_in_cache
    from executorlib.api import TestClusterExecutor
    from xl_spawn import pid_runs

    cache = tmp_path / "cache"
    exe = TestClusterExecutor(cache_directory=str(cache))
    future = exe.submit(sleep_long, 600)
    [pending] = list(cache.glob("*_i.h5"))
    key = pending.name[: -len("_i.h5")]
    # the pid goes to the sidecar right after the process started, before submit() returns
    pid = xl_cache.read_queue_id_file(Path(xl_cache.job_directory(cache, key)) / xl_cache.QUEUE_ID_FILE_NAME)
    assert pid is not None
    exe.shutdown(wait=False)  # detach: the process runs on, as after the submitting Python exited

    stopped = terminate_tasks_in_cache(str(cache))

    assert [record["queue_id"] for record in stopped] == [pid]
    assert not pending.exists()
    assert future.cancelled()  # by the detach (1.x), which left the process running
    _wait_for_end(pid)
    assert not pid_runs(pid, pending.name)


@pytest.mark.timeout(120)
def test_terminate_task_in_cache_stops_only_the_named_task(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor
    from executorlib.terminate import terminate_task_in_cache, terminate_tasks_in_cache

    cache = tmp_path / "cache"
    exe = TestClusterExecutor(cache_directory=str(cache))
    exe.submit(sleep_long, 600, resource_dict={"cache_key": "first"})
    exe.submit(sleep_long, 601, resource_dict={"cache_key": "second"})
    exe.shutdown(wait=False)

    stopped = terminate_task_in_cache(str(cache), "first", pysqa_config_directory=None, backend=None)

    assert [record["cache_key"] for record in stopped] == ["first"]
    assert not (cache / "first_i.h5").exists() and (cache / "second_i.h5").exists()
    _wait_for_end(stopped[0]["queue_id"])
    [second] = terminate_tasks_in_cache(str(cache), pysqa_config_directory=None)
    assert second["cache_key"] == "second"
    _wait_for_end(second["queue_id"])


@pytest.mark.timeout(120)
def test_terminate_deletes_queued_task_files_without_a_job_id_too(tmp_path: Path) -> None:
    """1.x deletes every pending task file: those still queued (no job id yet) would otherwise run later."""
    import xl_cache
    from executorlib import terminate_tasks_in_cache
    from executorlib.api import TestClusterExecutor

    cache = tmp_path / "cache"
    xl_cache.write_input(cache, "queued", sleep_long, (1,))  # no job yet
    xl_cache.write_input(cache, "runs/queued", sleep_long, (2,))  # a key with sub-folders
    xl_cache.write_output(cache, "finished", sleep_long, (0,), output=0)
    exe = TestClusterExecutor(cache_directory=str(cache))
    running = exe.submit(sleep_long, 600, resource_dict={"cache_key": "runs/running"})
    exe.shutdown(wait=False)

    stopped = {record["cache_key"]: record["queue_id"] for record in terminate_tasks_in_cache(str(cache))}

    assert set(stopped) == {"queued", "runs/queued", "runs/running"}
    assert stopped["queued"] is None and stopped["runs/running"] is not None
    assert sorted(p.name for p in cache.rglob("*_i.h5")) == []
    assert (cache / "finished_o.h5").exists()  # results stay
    _wait_for_end(stopped["runs/running"])
    assert running.cancelled()  # by the detach


def _wait_for_end(pid: int, timeout: float = TIMEOUT) -> None:
    """Until process ``pid`` ended, seen on its pidfd (no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable, f"process {pid} still runs after {timeout} s"
    finally:
        os.close(fd)

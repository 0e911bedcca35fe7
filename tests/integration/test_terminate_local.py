"""terminate_tasks_in_cache for TestClusterExecutor's local processes: their pid is in the queue-id sidecar."""

from __future__ import annotations

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
    assert future.exception(timeout=TIMEOUT) is not None  # its end, seen through the pidfd: the process is gone
    assert not pid_runs(pid, pending.name)

"""``run_time_max`` on SingleNodeExecutor: a task still running when its limit passes is killed (its whole process
group) and its Future fails with a TimeoutError naming the function and the limit; the cores (or, with block
allocation, the worker, replaced per ``restart_limit``) are freed and the next task runs. A task that ends in
time is untouched, and its timer does not hit the task its worker runs next.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from xl_test_helpers import (
    add,
    call_bounded,
    get_pid,
    note_pid_and_sleep,
    sleep_and_get_pid,
    sleep_and_return,
    wait_until,
)

TIMEOUT = 30


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting to be reaped is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _assert_overtime(error: BaseException | None, function: str, limit: int) -> None:
    assert isinstance(error, TimeoutError), repr(error)
    message = str(error)
    assert function in message and f"run_time_max={limit}" in message and "raise the limit" in message, message


@pytest.mark.timeout(90)
def test_a_per_call_task_over_its_limit_is_killed_and_the_next_task_runs(make_executor: Any, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    exe = make_executor(max_workers=1)  # one task at a time: the next ones need the killed task's cores
    start = time.monotonic()
    slow = exe.submit(note_pid_and_sleep, str(pids), 60, resource_dict={"run_time_max": 1})
    in_time = exe.submit(sleep_and_return, 7, 0.2, resource_dict={"run_time_max": 5})
    after = exe.submit(add, 1, 2)
    _assert_overtime(slow.exception(timeout=TIMEOUT), "note_pid_and_sleep", 1)
    assert time.monotonic() - start < 15
    assert in_time.result(timeout=TIMEOUT) == 7
    assert after.result(timeout=TIMEOUT) == 3
    [pid] = map(int, pids.read_text().split())
    wait_until(lambda: _gone(pid), timeout=TIMEOUT, what=f"the killed task's process {pid} to end")
    call_bounded(exe.shutdown, TIMEOUT, what="shutdown()")


@pytest.mark.timeout(90)
def test_an_executor_wide_limit_applies_to_each_per_call_task(make_executor: Any, tmp_path: Path) -> None:
    exe = make_executor(max_workers=2, resource_dict={"run_time_max": 2})
    slow = exe.submit(note_pid_and_sleep, str(tmp_path / "pids"), 60)
    assert exe.submit(add, 2, 2).result(timeout=TIMEOUT) == 4
    _assert_overtime(slow.exception(timeout=TIMEOUT), "note_pid_and_sleep", 2)
    call_bounded(exe.shutdown, TIMEOUT, what="shutdown()")


@pytest.mark.timeout(90)
def test_a_block_task_over_its_limit_kills_its_worker_which_is_replaced_without_a_retry(
    make_executor: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="executorlib")
    pids = tmp_path / "pids"
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=1, resource_dict={"run_time_max": 2})
    slow = exe.submit(note_pid_and_sleep, str(pids), 60)
    after = exe.submit(get_pid)  # queued behind it: runs on the replacement worker
    _assert_overtime(slow.exception(timeout=TIMEOUT), "note_pid_and_sleep", 2)
    replacement = after.result(timeout=TIMEOUT)
    [pid] = map(int, pids.read_text().split())  # one attempt: a task over its limit is not run again
    assert replacement != pid and _gone(pid)
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3
    call_bounded(exe.shutdown, TIMEOUT, what="shutdown()")
    # the replacement is not silent: one WARNING says why the worker went and how many restarts are left
    [record] = [r for r in caplog.records if r.name == "executorlib" and "restart_limit" in r.getMessage()]
    assert record.levelno == logging.WARNING and "run_time_max" in record.getMessage()


@pytest.mark.timeout(90)
def test_a_block_task_in_time_leaves_no_timer_to_kill_the_workers_next_task(make_executor: Any) -> None:
    """The first task's timer fires while the same worker runs the second task (which is within its own
    limit): the second task must complete on the same, unharmed worker."""
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=1, resource_dict={"run_time_max": 5})
    first = exe.submit(get_pid)
    worker = first.result(timeout=TIMEOUT)
    time.sleep(3)  # the first task's timer (5 s after it was sent) now fires at about 2 s into the second task
    second = exe.submit(sleep_and_get_pid, 3)
    assert second.result(timeout=TIMEOUT) == worker
    assert exe.submit(get_pid).result(timeout=TIMEOUT) == worker  # the same worker: it was never killed
    call_bounded(exe.shutdown, TIMEOUT, what="shutdown()")

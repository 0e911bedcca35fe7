"""SystemExit and KeyboardInterrupt in a task or init_function end the worker, never the caller (compat-1x.md §9).

executorlib 1.x workers catch only Exception, so ``sys.exit()`` in a task is a dead worker: the Future fails with
ExecutorlibSocketError, a pool restarts the worker while restart_limit allows. Ours used to send the SystemExit
back, and ``f.result()`` re-raised it in the user's process, ending the program silently.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
from xl_test_helpers import (
    add,
    exiting_init,
    get_pid,
    mpi_sys_exit_on_rank,
    raise_keyboard_interrupt,
    record_attempt_and_sys_exit,
    touch_and_return,
)

TIMEOUT = 60

# (how the task leaves, the arguments after the attempts file, how the executor names the worker's exit)
EXITS = {
    "sys-exit-3": ((3,), "EXIT(3)"),
    "bare-sys-exit": ((None,), "EXIT(0)"),
    "sys-exit-message": (("bye",), "EXIT(1)"),
}


def _socket_error() -> type[Exception]:
    from executorlib.api import ExecutorlibSocketError

    return ExecutorlibSocketError


@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
@pytest.mark.parametrize("how", sorted(EXITS))
def test_sys_exit_in_a_task_fails_its_future_with_a_dead_worker(
    make_executor: Any, tmp_path: Path, block_allocation: bool, how: str
) -> None:
    args, named = EXITS[how]
    exe = make_executor(max_workers=1, block_allocation=block_allocation, restart_limit=0)
    exc = exe.submit(record_attempt_and_sys_exit, str(tmp_path / "attempts"), *args).exception(timeout=TIMEOUT)
    assert type(exc) is _socket_error(), f"expected the dead-worker error, got {exc!r}"
    assert named in str(exc) and "record_attempt_and_sys_exit" in str(exc), str(exc)
    assert len((tmp_path / "attempts").read_text().split()) == 1
    if not block_allocation:  # a fresh process per call: the next call runs as usual
        assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3


@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
def test_keyboard_interrupt_in_a_task_fails_its_future_with_a_dead_worker(
    make_executor: Any, block_allocation: bool
) -> None:
    exe = make_executor(max_workers=2, block_allocation=block_allocation)
    exc = exe.submit(raise_keyboard_interrupt).exception(timeout=TIMEOUT)
    assert type(exc) is _socket_error(), f"expected the dead-worker error, got {exc!r}"
    assert "EXIT(130" in str(exc), str(exc)
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3  # block: on the other worker


def test_a_block_worker_that_exits_is_restarted_and_the_task_retried_within_restart_limit(
    make_executor: Any, tmp_path: Path
) -> None:
    attempts = tmp_path / "attempts"
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=2)
    exc = exe.submit(record_attempt_and_sys_exit, str(attempts), 3).exception(timeout=TIMEOUT)
    assert type(exc) is _socket_error(), f"expected the dead-worker error, got {exc!r}"
    pids = attempts.read_text().split()
    assert len(pids) == 3 and len(set(pids)) == 3, f"one run per worker (the first and two restarts), got {pids}"
    # No worker is left: what comes next fails the same way instead of waiting.
    later = exe.submit(add, 1, 2).exception(timeout=TIMEOUT)
    assert type(later) is _socket_error() and "restart_limit=2" in str(later), repr(later)


def test_a_sys_exit_among_batched_tiny_tasks_loses_none_of_the_others(make_executor: Any, tmp_path: Path) -> None:
    # Two workers, no restarts: the one that exits is gone, and the tasks queued behind the exit go to the other.
    exe = make_executor(max_workers=2, block_allocation=True, restart_limit=0)
    assert exe.submit(add, 0, 0).result(timeout=TIMEOUT) == 0  # a worker is up: quick tasks travel in batches
    before = [exe.submit(add, i, 1) for i in range(20)]
    poison = exe.submit(record_attempt_and_sys_exit, str(tmp_path / "attempts"), 3)
    after = [exe.submit(add, i, 2) for i in range(20)]
    assert [f.result(timeout=TIMEOUT) for f in before] == [i + 1 for i in range(20)]
    assert [f.result(timeout=TIMEOUT) for f in after] == [i + 2 for i in range(20)]
    assert type(poison.exception(timeout=TIMEOUT)) is _socket_error()


def test_an_init_function_that_exits_fails_every_task_with_a_dead_worker(make_executor: Any, tmp_path: Path) -> None:
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=1, init_function=exiting_init)
    futures = [exe.submit(touch_and_return, str(tmp_path / f"ran_{i}"), i) for i in range(3)]
    for future in futures:
        exc = future.exception(timeout=TIMEOUT)
        assert type(exc) is _socket_error(), f"expected the dead-worker error, got {exc!r}"
    assert not list(tmp_path.glob("ran_*")), "a task ran on a worker whose init_function exited"


def test_the_exit_is_explained_on_the_workers_stderr(tmp_path: Path) -> None:
    """The worker says why it ends; the caller's process goes on (run in a child so its stderr can be read)."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from executorlib import SingleNodeExecutor\n"
        "def f():\n"
        "    sys.exit(3)\n"
        "with SingleNodeExecutor() as exe:\n"
        "    print(type(exe.submit(f).exception(timeout=60)).__name__)\n"
        "print('caller still alive')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ExecutorlibSocketError", "caller", "still", "alive"]
    assert "the function f called sys.exit(3); the worker exits with status 3" in done.stderr


def test_sys_exit_in_a_file_mode_task_fails_its_future_with_job_failed(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor
    from executorlib.errors import JobFailedError

    with TestClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        exc = exe.submit(record_attempt_and_sys_exit, str(tmp_path / "attempts"), 3).exception(timeout=TIMEOUT)
        assert type(exc) is JobFailedError, f"expected JobFailedError, got {exc!r}"
        assert "exit status 3" in str(exc), str(exc)
        assert exe.submit(get_pid).result(timeout=TIMEOUT) != os.getpid()


def _have_mpi() -> bool:
    from xl_spawn import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


@pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")
@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
@pytest.mark.parametrize("bad_rank", [0, 1])
def test_sys_exit_on_an_mpi_rank_ends_the_mpi_worker(make_executor: Any, block_allocation: bool, bad_rank: int) -> None:
    exe = make_executor(
        max_workers=1,
        max_cores=2,
        block_allocation=block_allocation,
        restart_limit=int(block_allocation),
        resource_dict={"cores": 2},
    )
    exc = exe.submit(mpi_sys_exit_on_rank, bad_rank, 5).exception(timeout=TIMEOUT)
    assert type(exc) is _socket_error(), f"expected the dead-worker error, got {exc!r}"
    if not block_allocation:  # (block: the task was retried on the restarted worker, which exited too)
        assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == [3, 3]

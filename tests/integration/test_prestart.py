"""One process per call (``block_allocation=False``) keeps one worker started ahead (a spare): it is a fresh
process, never runs two tasks, is not counted until it runs one, is replaced when it dies idle and stopped at
shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from xl_test_helpers import (
    block_until_released,
    get_cwd,
    get_env,
    get_pid,
    mpi_rank_size,
    wait_for_files,
    wait_until,
)

TIMEOUT = 60


def _workers() -> list[psutil.Process]:
    """This process's worker processes (direct or under a fork server) that are still running."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if _is_worker(child.name(), child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _is_worker(name: str, cmdline: list[str]) -> bool:
    """A started worker, or one forked by the fork server (named after the module; its command line is the
    server's, which names the module too)."""
    command = " ".join(cmdline)
    return name == "xl_comm.worker" or ("xl_comm.worker" in command and "xl_spawn.forkserver" not in command)


def _spare_pids(busy: set[int]) -> set[int]:
    return {p.pid for p in _workers()} - busy


def test_calls_one_after_another_each_run_in_a_fresh_process(make_executor) -> None:
    exe = make_executor(max_workers=1)
    pids = [exe.submit(get_pid).result(timeout=TIMEOUT) for _ in range(6)]
    assert len(set(pids)) == 6, f"a worker process ran two calls: {pids}"
    assert os.getpid() not in pids


def test_a_spare_holds_no_place_under_max_workers(make_executor, tmp_path: Path) -> None:
    """max_workers=1 with a task running: at most one more worker is started ahead, and it runs nothing until
    the running task is done."""
    exe = make_executor(max_workers=1)
    started, release, done = (str(tmp_path / name) for name in ("started", "release", "done"))
    first = exe.submit(block_until_released, "first", started, release, done)
    wait_for_files([Path(started)])
    running = exe.submit(get_pid)  # waits for the first: max_workers=1
    wait_until(lambda: len(_workers()) == 2, TIMEOUT, what="a worker started ahead")
    time.sleep(0.5)  # time in which a wrongly counted spare would run the second task
    assert not running.done(), "the second task ran while the first held the only place"
    assert len(_workers()) == 2, "more than one worker was started ahead"
    Path(release).touch()
    assert first.result(timeout=TIMEOUT) == "first"
    assert running.result(timeout=TIMEOUT) > 0


def test_killing_the_idle_spare_does_not_fail_the_next_task(make_executor) -> None:
    exe = make_executor(max_workers=1)
    used = exe.submit(get_pid).result(timeout=TIMEOUT)
    wait_until(lambda: bool(_spare_pids({used})), TIMEOUT, what="a worker started ahead")
    (spare,) = _spare_pids({used})
    os.kill(spare, signal.SIGKILL)
    wait_until(lambda: spare not in {p.pid for p in _workers()}, TIMEOUT, what=f"pid {spare} gone")
    pid = exe.submit(get_pid).result(timeout=TIMEOUT)
    assert pid not in (used, spare)
    assert exe.submit(get_pid).result(timeout=TIMEOUT) not in (used, spare, pid)


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
def test_shutdown_stops_the_spare(make_executor, wait: bool) -> None:
    # processes of this test session that are not ours to count (e.g. a flux instance a fixture started)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    exe = make_executor(max_workers=1)
    used = exe.submit(get_pid).result(timeout=TIMEOUT)
    wait_until(lambda: bool(_spare_pids({used})), TIMEOUT, what="a worker started ahead")
    exe.shutdown(wait=wait)
    wait_until(lambda: not _workers(), TIMEOUT, what="every worker gone after shutdown")
    if wait:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        assert not left, f"processes left after shutdown(wait=True): {left}"


def test_interpreter_exit_without_shutdown_stops_the_spare(tmp_path: Path) -> None:
    script = tmp_path / "forgets_shutdown.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, time, psutil
            from executorlib import SingleNodeExecutor

            exe = SingleNodeExecutor(max_workers=1)
            used = exe.submit(os.getpid).result(timeout=60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                kids = [p.pid for p in psutil.Process().children(recursive=True) if p.pid != used]
                if any(psutil.Process(p).name() == "xl_comm.worker" for p in kids):
                    break
                time.sleep(0.01)
            print(" ".join(map(str, kids)), flush=True)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    pids = [int(word) for word in out.split()]
    assert pids, "the script saw no worker started ahead"
    _gone, alive = psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=10)
    assert not alive, f"left behind after interpreter exit: {alive}"


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def test_a_task_of_another_shape_gets_a_worker_of_its_shape(make_executor, tmp_path: Path) -> None:
    exe = make_executor(max_workers=1)
    here = str(tmp_path / "elsewhere")
    shapes = [{}, {"cwd": here}, {}, {"threads_per_core": 2}, {"threads_per_core": 2}, {}]
    seen = [
        (
            exe.submit(get_cwd, resource_dict=dict(shape)).result(timeout=TIMEOUT),
            exe.submit(get_env, "OMP_NUM_THREADS", resource_dict=dict(shape)).result(timeout=TIMEOUT),
        )
        for shape in shapes
    ]
    assert seen[1][0] == here
    assert [cwd == here for cwd, _ in seen] == [False, True, False, False, False, False]
    assert [threads for _, threads in seen] == ["1", "1", "1", "2", "2", "1"]


def _have_mpi() -> bool:
    import importlib.util

    from xl_spawn import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


@pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")
def test_an_mpi_task_between_one_core_tasks_runs_on_its_ranks(make_executor) -> None:
    """A spare is one-core: a cores=2 task gets an mpiexec team of its own, and the one-core tasks around it
    still run in fresh processes."""
    exe = make_executor(max_cores=2)
    first = exe.submit(get_pid).result(timeout=TIMEOUT)
    ranks = exe.submit(mpi_rank_size, 7, resource_dict={"cores": 2}).result(timeout=TIMEOUT)
    assert sorted(ranks) == [(7, 2, 0), (7, 2, 1)]  # (i, size, rank) from each rank
    last = exe.submit(get_pid).result(timeout=TIMEOUT)
    assert last != first

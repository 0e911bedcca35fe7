"""kill -9 of the process holding a SingleNodeExecutor leaves no worker (nor a worker's child) alive after 5 s."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

_SCRIPT = textwrap.dedent(
    """
    import subprocess, sys, time
    from executorlib import SingleNodeExecutor

    def busy(x):
        subprocess.Popen(["sleep", "600"])  # a child of the user's function must go too
        time.sleep(600)

    block = sys.argv[1] == "block"
    exe = SingleNodeExecutor(max_workers=2, block_allocation=block)
    futures = [exe.submit(busy, i) for i in range(2)]
    time.sleep(1.5)
    print("running", flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _assert_all_exit(pids: list[int], within: float = 5.0) -> None:
    """Every process in ``pids`` ends within ``within`` seconds of its executor's death."""
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in pids if _alive(pid)]
    assert not alive, f"{[psutil.Process(p).cmdline() for p in alive]} outlived the executor by {within:g} s"


@pytest.mark.parametrize("mode", ["block", "one-process"])
def test_kill_9_of_the_executor_leaves_no_worker(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "driver.py"
    script.write_text(_SCRIPT)
    # Key directories go to this TMPDIR, to be found even where no /proc file names them (a worker forked by the
    # fork server has its key file's name only in its os.environ).
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    driver = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert driver.stdout is not None
        ready, _, _ = select.select([driver.stdout], [], [], 60)
        assert ready and driver.stdout.readline().strip() == "running"
        descendants = [p.pid for p in psutil.Process(driver.pid).children(recursive=True)]
        assert len(descendants) >= 4, "two workers, each with a sleeping child, were expected"
        key_files = [
            entry.split("=", 1)[1]
            for pid in descendants
            for entry in Path(f"/proc/{pid}/environ").read_text().split("\0")
            if entry.startswith("XL_COMM_KEY_FILE=")
        ]
        assert all(path.startswith(str(tmp)) for path in key_files), "key files were made outside TMPDIR"
        driver.kill()
        driver.wait(timeout=10)
        _assert_all_exit(descendants)
        left = list(tmp.glob(".xl-comm-keys-*"))
        assert not left + [path for path in key_files if os.path.exists(os.path.dirname(path))], (
            "a key directory outlived the executor"
        )
    finally:
        driver.kill()


def test_tasks_queued_behind_a_dying_worker_run_elsewhere() -> None:
    """Quick tasks get their successor queued on the same worker; if that worker dies, the queued tasks never
    started, so they must run on another worker instead of failing with the crash."""
    from executorlib import SingleNodeExecutor
    from executorlib.api import ExecutorlibSocketError
    from xl_test_helpers import exit_process, identity

    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        for _ in range(3):  # warm both workers up so they count as quick and get tasks queued ahead
            assert [f.result(timeout=60) for f in [exe.submit(identity, i) for i in range(200)]] == list(range(200))
        crash = exe.submit(exit_process, 3)
        after = [exe.submit(identity, i) for i in range(200)]
        with pytest.raises(ExecutorlibSocketError, match=r"EXIT\(3\)"):
            crash.result(timeout=60)
        assert [f.result(timeout=60) for f in after] == list(range(200))


_FORKING_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from executorlib import SingleNodeExecutor

    block = sys.argv[1] == "block"
    exe = SingleNodeExecutor(max_workers=1, block_allocation=block)
    if block:
        worker = exe.submit(os.getpid).result(timeout=60)  # the pool's worker lives on after this call
    else:
        exe.submit(time.sleep, 600)
        time.sleep(1.5)
    # user code in the executor's process starts a long-lived fork helper after the worker started
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,), daemon=True)
    helper.start()
    print(helper.pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["block", "one-process"])
def test_kill_9_of_the_executor_stops_its_workers_despite_a_fork_helper(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "driver.py"
    script.write_text(_FORKING_SCRIPT)
    # Key directories go to this TMPDIR, to be found even where no /proc file names them (a worker forked by the
    # fork server has its key file's name only in its os.environ).
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    driver = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True, env=env)
    helper, workers = None, []
    try:
        assert driver.stdout is not None
        ready, _, _ = select.select([driver.stdout], [], [], 60)
        assert ready, "the driver did not start its worker and helper"
        helper = int(driver.stdout.readline())
        workers = [p.pid for p in psutil.Process(driver.pid).children(recursive=True) if p.pid != helper]
        assert workers, "a worker was expected"
        driver.kill()
        driver.wait(timeout=10)
        _assert_all_exit(workers)
    finally:
        driver.kill()
        for pid in [*workers, *([helper] if helper is not None else [])]:
            if _alive(pid):
                psutil.Process(pid).kill()

"""The lifeline: a spawner's process group dies with the process that spawned it, even by SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

PARENT = textwrap.dedent(
    """
    import sys, time
    from xl_spawn import SubprocessSpawner
    spawner = SubprocessSpawner(lifeline=sys.argv[1] == "on")
    # a child that does nothing to notice its parent's death, and ignores SIGTERM
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    spawner.bootup([sys.executable, "-c", stubborn])
    print(spawner.pid, flush=True)
    time.sleep(60)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:  # gone: ENOENT from open, or ESRCH from read if it went in between
        return False


def _spawn_then_kill_parent(lifeline: str) -> int:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, lifeline], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    return child


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the lifeline uses Linux's F_SETSIG")
def test_the_child_group_dies_with_a_killed_parent() -> None:
    child = _spawn_then_kill_parent("on")
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(child)


def test_without_a_lifeline_the_child_outlives_the_parent() -> None:
    child = _spawn_then_kill_parent("off")
    try:
        time.sleep(0.3)
        assert _alive(child)
    finally:
        os.killpg(child, signal.SIGKILL)


FORKING_PARENT = textwrap.dedent(
    """
    import multiprocessing, sys, time
    from xl_spawn import SubprocessSpawner
    spawner = SubprocessSpawner()
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    spawner.bootup([sys.executable, "-c", stubborn])
    # a long-lived fork helper, as user code may start one (multiprocessing's fork context, a fork Pool)
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
    helper.start()
    print(spawner.pid, helper.pid, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the lifeline uses Linux's F_SETSIG")
@pytest.mark.timeout(60)
def test_a_forked_helper_does_not_keep_the_child_alive() -> None:
    parent = subprocess.Popen([sys.executable, "-c", FORKING_PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child, helper = (int(pid) for pid in parent.stdout.readline().split())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _alive(child), "the fork helper kept the lifeline's write end open"
    finally:
        for pid in (helper, child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

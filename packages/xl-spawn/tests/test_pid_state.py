"""pid_is_zombie: a process that exited but is not reaped yet, told from one that runs or is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from xl_spawn import pid_is_zombie


@pytest.mark.timeout(30)
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="pid_is_zombie reads /proc; without it the answer is False")
def test_a_killed_child_is_a_zombie_until_reaped() -> None:
    # a thread besides the main one, as a worker has (zmq's IO threads)
    code = "import sys, threading; threading.Thread(target=sys.stdin.read).start(); print('ready', flush=True)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert not pid_is_zombie(proc.pid)  # runs
        os.kill(proc.pid, signal.SIGKILL)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # blocks until it exited; does not reap
        assert pid_is_zombie(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=20)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    assert not pid_is_zombie(proc.pid)  # reaped: gone


def test_pid_is_zombie_refuses_what_is_not_a_pid() -> None:
    assert not pid_is_zombie(os.getpid())
    assert not pid_is_zombie(0) and not pid_is_zombie(-1)
    with pytest.raises(TypeError, match="pid must be an int"):
        pid_is_zombie(True)
    with pytest.raises(TypeError, match="pid must be an int"):
        pid_is_zombie("1")  # type: ignore[arg-type]


def test_pid_is_zombie_answers_false_where_proc_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XL_PORTABLE", "ps")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert not pid_is_zombie(child.pid)
    finally:
        child.wait(timeout=20)

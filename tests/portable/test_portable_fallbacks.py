"""Each portable fallback of a Linux-only part, forced on Linux through ``XL_PORTABLE``, is the one in use and
keeps its guarantee. The contract suite runs with all of them at once in ``scripts/test.sh``
(``XL_PORTABLE=all pytest tests/contract/test_executor_contract.py``).

| Linux part | fallback | forced by | test here |
|---|---|---|---|
| abstract unix socket (hub) | loopback TCP, authenticated as always | ``tcp`` | test_tcp_* |
| ``select.epoll`` (hub) | ``select.poll`` | ``poll`` | test_poll_* |
| ``os.eventfd`` (a helping caller's wake-up) | a pipe | ``pipe`` | test_pipe_* |
| ``os.pidfd_open`` (sentinels, TestClusterExecutor's jobs) | a waiter thread's pipe | ``waiter`` | test_waiter_* |
| F_SETSIG lifeline | the worker's watchdog thread | ``watchdog`` | test_watchdog_* |
| ``/proc/<pid>/cmdline`` | ``ps -ww -o args=`` | ``ps`` | test_ps_* |
| ``/proc/self/fd/<n>`` | open by path, then compare device and inode | ``fdpath`` | test_fdpath_* |
| sealed memfds by ``SCM_RIGHTS`` (large arrays) | zmq frames | ``shm`` | test_frames_replace_shared_memory |
"""

from __future__ import annotations

import operator
import os
import select
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xl_cache.portable
import xl_cache.store
import xl_comm.portable
import xl_comm.watchdog
import xl_spawn
import xl_spawn.cmdline
import xl_spawn.portable
from hypothesis import given
from hypothesis import strategies as st

TIMEOUT = 30.0
COPIES = (xl_comm.portable, xl_spawn.portable, xl_cache.portable)


def _exited(pid: int, timeout: float = TIMEOUT) -> bool:
    """Whether process ``pid`` (not our child) ends within ``timeout``, seen on its pidfd (no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_every_package_knows_the_same_fallbacks() -> None:
    assert {copy.FALLBACKS for copy in COPIES} == {xl_comm.portable.FALLBACKS}
    assert {copy.PORTABLE_VARIABLE for copy in COPIES} == {"XL_PORTABLE"}
    assert xl_comm.watchdog.LIFELINE_VARIABLE == xl_spawn.LIFELINE_VARIABLE


@given(st.sets(st.sampled_from(sorted(xl_spawn.portable.FALLBACKS))), st.sampled_from(COPIES))
def test_a_comma_list_forces_exactly_its_names(names: set[str], copy: Any) -> None:
    value = " , ".join(sorted(names)) + ","
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XL_PORTABLE", value)
        assert {name for name in copy.FALLBACKS if copy.forced(name)} == names
        patch.setenv("XL_PORTABLE", "all")
        assert all(copy.forced(name) for name in copy.FALLBACKS)
        patch.delenv("XL_PORTABLE")
        assert not any(copy.forced(name) for name in copy.FALLBACKS)


def test_an_unknown_name_is_refused_with_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XL_PORTABLE", "tcp,kqueue")
    with pytest.raises(ValueError, match=r"XL_PORTABLE='tcp,kqueue' names unknown fallbacks \['kqueue'\].*'watchdog'"):
        xl_spawn.portable.forced("tcp")


# -- tcp, poll, pipe (xl-comm) ---------------------------------------------------------------------------------


def _hub(make_executor: Callable[..., Any], **kwargs: Any) -> Any:
    exe = make_executor(block_allocation=True, max_workers=1, **kwargs)
    assert exe.submit(sum, [1, 2]).result(timeout=TIMEOUT) == 3
    return exe, exe._scheduler._hub


def test_tcp_replaces_the_abstract_unix_socket(monkeypatch: pytest.MonkeyPatch, make_executor: Any) -> None:
    monkeypatch.setenv("XL_PORTABLE", "tcp")
    _, hub = _hub(make_executor)
    assert hub.address.startswith("tcp://127.0.0.1:")


def _memfd_mapped(array: Any) -> bool:
    """On the worker: whether an argument arrived in a mapping of an xl-comm memfd."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        return any("memfd:xl-comm" in line for line in maps)


@pytest.mark.parametrize("forced", ["", "shm", "tcp"])
def test_frames_replace_shared_memory(monkeypatch: pytest.MonkeyPatch, make_executor: Any, forced: str) -> None:
    """Large arrays go through sealed memfds unless shm (or tcp, which has no mailbox) is forced."""
    import numpy as np

    monkeypatch.setenv("XL_PORTABLE", forced)
    exe, hub = _hub(make_executor)
    assert (hub._mailbox is None) == bool(forced)
    array = np.arange(8 << 20, dtype=np.uint8)
    assert exe.submit(_memfd_mapped, array).result(timeout=TIMEOUT) == (not forced)
    assert np.array_equal(exe.submit(operator.neg, array).result(timeout=TIMEOUT), -array)


def test_poll_replaces_epoll_and_pipe_replaces_eventfd(monkeypatch: pytest.MonkeyPatch, make_executor: Any) -> None:
    from xl_comm.assist import thread_waiter
    from xl_comm.pollers import PollPoller

    monkeypatch.setenv("XL_PORTABLE", "poll,pipe")
    exe, hub = _hub(make_executor)
    assert isinstance(hub._poller, PollPoller)
    waiters: list[Any] = []
    # a new thread makes its waiter now; result() helps the hub, sleeping on that waiter
    thread = threading.Thread(target=lambda: waiters.append((thread_waiter(), exe.submit(abs, -4).result(TIMEOUT))))
    thread.start()
    thread.join(TIMEOUT)
    ((waiter, result),) = waiters
    assert result == 4
    assert stat.S_ISFIFO(os.fstat(waiter.fd).st_mode)


# -- waiter, watchdog, ps (xl-spawn) ------------------------------------------------------------------------------


def test_waiter_replaces_the_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XL_PORTABLE", "waiter")
    with xl_spawn.SubprocessSpawner() as spawner:
        spawner.bootup([sys.executable, "-c", "import sys; sys.stdin.read()"])
        assert stat.S_ISFIFO(os.fstat(spawner.sentinel).st_mode)  # a pidfd is an anonymous inode, not a FIFO
        assert not select.select([spawner.sentinel], [], [], 0)[0]
        os.kill(spawner.pid, signal.SIGKILL)
        assert select.select([spawner.sentinel], [], [], TIMEOUT)[0]
        assert spawner.poll() is None or spawner.returncode == -signal.SIGKILL  # not reaped by the waiter
        assert spawner.wait(TIMEOUT) == -signal.SIGKILL


def test_waiter_cannot_watch_a_stranger_without_pidfd_or_kqueue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XL_PORTABLE", "waiter")
    with pytest.raises(xl_spawn.UnwatchableProcessError, match=f"pid {os.getppid()}.*neither pidfd_open nor kqueue"):
        xl_spawn.exit_fd(os.getppid(), child=False)


def test_waiter_serves_test_cluster_jobs(
    monkeypatch: pytest.MonkeyPatch, executor_registry: list[Any], tmp_path: Path
) -> None:
    import executorlib.launchers.local_jobs as local_jobs
    from executorlib.api import TestClusterExecutor

    monkeypatch.setenv("XL_PORTABLE", "waiter")
    kinds: list[bool] = []
    real = local_jobs.exit_fd

    def spy(pid: int, *, child: bool) -> int:
        fd = real(pid, child=child)
        kinds.append(stat.S_ISFIFO(os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(local_jobs, "exit_fd", spy)
    exe = TestClusterExecutor(cache_directory=str(tmp_path))
    executor_registry.append(exe)
    assert exe.submit(pow, 2, 5).result(timeout=TIMEOUT) == 32
    assert kinds == [True]


PARENT = textwrap.dedent(
    """
    import sys, time
    from xl_spawn import SubprocessSpawner
    spawner = SubprocessSpawner()
    # a child that ignores SIGTERM and runs the watchdog only when told to
    child = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "if sys.argv[1] == 'watch':\\n"
        "    from xl_comm.watchdog import start_watchdog; assert start_watchdog() is not None\\n"
        "print('ready', flush=True); time.sleep(60)"
    )
    spawner.bootup([sys.executable, "-c", child, sys.argv[1]])
    print(spawner.pid, flush=True)
    time.sleep(60)
    """
)


def _spawn_then_kill_parent(mode: str) -> int:
    env = {**os.environ, "XL_PORTABLE": "watchdog"}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True, env=env)
    assert parent.stdout is not None
    # the child shares the parent's stdout: its "ready" (watchdog started) and the parent's pid line, either order
    lines = {parent.stdout.readline().strip(), parent.stdout.readline().strip()}
    assert "ready" in lines
    child = int((lines - {"ready"}).pop())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=TIMEOUT)
    return child


def test_watchdog_kills_the_worker_group_when_the_executor_dies() -> None:
    assert _exited(_spawn_then_kill_parent("watch"))


def test_watchdog_replaces_the_kernel_lifeline() -> None:
    """A child without the watchdog outlives its parent: the F_SETSIG lifeline was not armed."""
    child = _spawn_then_kill_parent("idle")
    try:
        assert not _exited(child, timeout=0.5)
    finally:
        os.killpg(child, signal.SIGKILL)


def test_watchdog_ignores_a_pipe_it_did_not_inherit(monkeypatch: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    try:
        status = os.fstat(read_fd)
        monkeypatch.setenv("XL_LIFELINE", f"{read_fd}:{status.st_dev}:{status.st_ino + 1}")
        assert xl_comm.watchdog.start_watchdog() is None
        assert "XL_LIFELINE" not in os.environ
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_ps_replaces_proc_cmdline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XL_PORTABLE", "ps")
    calls: list[int] = []
    real = xl_spawn.cmdline._ps_command_line
    monkeypatch.setattr(xl_spawn.cmdline, "_ps_command_line", lambda pid: calls.append(pid) or real(pid))
    marker = str(tmp_path / "task with spaces_i.h5")
    # "up" is printed after exec, so ps sees this command line (not the forking parent's); it runs until stdin closes
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()", marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        assert xl_spawn.pid_runs(child.pid, marker)
        assert not xl_spawn.pid_runs(child.pid, str(tmp_path / "another_i.h5"))
    finally:
        child.communicate(timeout=TIMEOUT)  # closes stdin: the child ends, and is reaped here
    assert not xl_spawn.pid_runs(child.pid, marker)  # gone (a recycled pid would not run the marker either)
    assert calls == [child.pid] * 3


# -- fdpath (xl-cache) --------------------------------------------------------------------------------------------


def test_fdpath_replaces_proc_self_fd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import xl_cache

    monkeypatch.setenv("XL_PORTABLE", "fdpath")

    def refuse() -> str:
        raise AssertionError("/proc/self/fd was used although XL_PORTABLE=fdpath")

    monkeypatch.setattr(xl_cache.store, "_proc_fd", refuse)
    xl_cache.write_output(str(tmp_path), "k1", pow, (2, 3), output=8)
    outcome = xl_cache.load_result(str(tmp_path), "k1")
    assert outcome is not None and outcome.result() == 8

"""SubprocessSpawner against real processes, with the pidfd sentinel and with the pipe fallback."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from spawn_helpers import is_gone, python_argv, read_when_written, wait_until
from xl_spawn import Spawner, SubprocessSpawner, describe_returncode, python_module_argv

Make = Callable[..., SubprocessSpawner]

SLEEP = python_argv("import time; time.sleep(100)")


def ready_then(path: Path, setup: str, then: str) -> list[str]:
    """A child that runs ``setup``, then atomically writes ``path`` to say it is ready, then runs ``then``."""
    tmp = str(path) + ".tmp"
    announce = f"open({tmp!r}, 'w').close()\nos.replace({tmp!r}, {str(path)!r})"
    return python_argv(f"import os, signal, time\n{setup}\n{announce}\n{then}\n")


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


# -- exit status ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "returncode", "text"),
    [
        ("pass", 0, "EXIT(0)"),
        ("import sys; sys.exit(3)", 3, "EXIT(3)"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -9, "SIGKILL(-9)"),
    ],
    ids=["exit0", "exit3", "sigkill"],
)
def test_exit_status(make_spawner: Make, code: str, returncode: int, text: str) -> None:
    spawner = make_spawner()
    spawner.bootup(python_argv(code))
    assert spawner.wait(timeout=30) == returncode
    assert spawner.returncode == returncode
    assert spawner.poll() == returncode
    assert describe_returncode(returncode) == text
    assert spawner.shutdown() == returncode


def test_wait_timeout_raises(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(SLEEP)
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        spawner.wait(timeout=0.2)
    assert 0.15 < time.monotonic() - start < 5
    assert spawner.poll() is None
    assert spawner.returncode is None


# -- sentinel ------------------------------------------------------------------------------------------------


def test_sentinel_readable_within_a_second_of_exit(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(SLEEP)
    assert not readable(spawner.sentinel, 0.2)
    os.kill(spawner.pid, signal.SIGKILL)
    assert readable(spawner.sentinel, 1.0)
    # Readable means exited: reaping cannot block now.
    assert spawner.poll() == -9
    # Level-triggered: it stays readable until shutdown closes it.
    assert readable(spawner.sentinel, 0)


def test_sentinel_of_a_process_that_exits_at_once(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(["true"])
    assert readable(spawner.sentinel, 10.0)
    assert spawner.poll() == 0


def test_sentinel_kind(make_spawner: Make, sentinel_kind: str) -> None:
    spawner = make_spawner()
    spawner.bootup(SLEEP)
    target = os.readlink(f"/proc/self/fd/{spawner.sentinel}")
    assert target.startswith("anon_inode:[pidfd]" if sentinel_kind == "pidfd" else "pipe:")


@pytest.mark.parametrize("exits_at_once", [False, True], ids=["killed-later", "exits-at-once"])
def test_sentinel_works_with_zmq_poller(make_spawner: Make, exits_at_once: bool) -> None:
    zmq = pytest.importorskip("zmq")
    spawner = make_spawner()
    spawner.bootup(["true"] if exits_at_once else SLEEP)
    poller = zmq.Poller()
    poller.register(spawner.sentinel, zmq.POLLIN)
    if not exits_at_once:
        assert poller.poll(100) == []
        os.kill(spawner.pid, signal.SIGKILL)
    events = dict(poller.poll(5000))
    # POLLIN, not POLLERR: the pipe fallback writes a byte before it closes, for exactly this reason.
    assert events.get(spawner.sentinel, 0) & zmq.POLLIN


def test_sentinel_closed_by_shutdown(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(["true"])
    fd = spawner.sentinel
    spawner.shutdown()
    with pytest.raises(RuntimeError, match="closed by shutdown"):
        _ = spawner.sentinel
    with pytest.raises(OSError):
        os.fstat(fd)


# -- shutdown ------------------------------------------------------------------------------------------------


def test_shutdown_terminates_a_sleeping_process(make_spawner: Make) -> None:
    spawner = make_spawner(terminate_timeout=10.0)
    spawner.bootup(SLEEP)
    start = time.monotonic()
    assert spawner.shutdown() == -signal.SIGTERM
    assert time.monotonic() - start < 5  # SIGTERM sufficed, no wait for the kill
    assert describe_returncode(-signal.SIGTERM) == "SIGTERM(-15)"


def test_shutdown_kills_a_process_that_ignores_sigterm(make_spawner: Make, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spawner = make_spawner(terminate_timeout=0.5)
    spawner.bootup(ready_then(ready, "signal.signal(signal.SIGTERM, signal.SIG_IGN)", "time.sleep(100)"))
    read_when_written(ready)
    start = time.monotonic()
    assert spawner.shutdown() == -signal.SIGKILL
    assert 0.45 < time.monotonic() - start < 5


def test_grandchild_is_gone_after_shutdown(make_spawner: Make, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    spawner = make_spawner()
    spawner.bootup(["sh", "-c", f"sleep 100 & echo $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; sleep 100"])
    grandchild = int(read_when_written(pidfile))
    assert not is_gone(grandchild)
    spawner.shutdown()
    wait_until(lambda: is_gone(grandchild), 5.0, f"grandchild {grandchild} to die")


def test_grandchild_left_by_a_normal_exit_is_gone_after_shutdown(make_spawner: Make, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    spawner = make_spawner()
    spawner.bootup(["sh", "-c", f"sleep 100 & echo $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}"])
    grandchild = int(read_when_written(pidfile))
    assert spawner.wait(timeout=30) == 0
    assert not is_gone(grandchild)  # the leader's exit alone does not stop it ...
    assert spawner.shutdown() == 0
    wait_until(lambda: is_gone(grandchild), 5.0, f"grandchild {grandchild} to die")  # ... shutdown does


def test_shutdown_is_idempotent(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(SLEEP)
    first = spawner.shutdown()
    assert first == -signal.SIGTERM
    assert spawner.shutdown() == first
    assert spawner.shutdown(wait=False) == first
    assert spawner.wait(timeout=1) == first
    assert spawner.poll() == first


def test_shutdown_without_wait_reaps_in_the_background(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(SLEEP)
    pid = spawner.pid
    # None while the background thread has not reaped it yet; on a quick machine it may already have
    assert spawner.shutdown(wait=False) in (None, -signal.SIGTERM)
    # No zombie: the background thread reaps (returncode set by Popen) and the pid disappears.
    wait_until(lambda: spawner.returncode is not None, 10.0, "the background shutdown to reap")
    assert spawner.returncode == -signal.SIGTERM
    wait_until(lambda: not psutil.pid_exists(pid), 5.0, f"pid {pid} to disappear")
    assert spawner.shutdown() == -signal.SIGTERM


def test_no_zombie_and_no_fd_left(make_spawner: Make, sentinel_kind: str) -> None:
    before = set(os.listdir("/proc/self/fd"))
    spawner = make_spawner()
    spawner.bootup(python_argv("pass"))
    pid = spawner.pid
    assert readable(spawner.sentinel, 10.0)
    assert spawner.shutdown() == 0
    assert not psutil.pid_exists(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped
    # The fallback's watcher thread closes its write end and ends.
    wait_until(lambda: not any(t.name == f"xl-spawn-sentinel-{pid}" for t in threading.enumerate()), 5.0)
    assert set(os.listdir("/proc/self/fd")) == before


def test_context_manager_stops_the_process_and_keeps_the_exception(make_spawner: Make) -> None:
    spawner = make_spawner()
    with pytest.raises(KeyError), spawner:
        spawner.bootup(SLEEP)
        raise KeyError("boom")
    assert spawner.returncode == -signal.SIGTERM


def test_process_leads_its_own_group(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(SLEEP)
    assert os.getpgid(spawner.pid) == spawner.pid != os.getpgid(0)


# -- cwd and env ---------------------------------------------------------------------------------------------


def test_cwd_is_created_private(make_spawner: Make, tmp_path: Path) -> None:
    cwd = tmp_path / "new" / "work"
    spawner = make_spawner(cwd=cwd)
    spawner.bootup(python_argv("import os; open('cwd.txt', 'w').write(os.getcwd())"))
    assert spawner.wait(timeout=30) == 0
    assert Path((cwd / "cwd.txt").read_text()).resolve() == cwd.resolve()
    assert (cwd.stat().st_mode & 0o777) == 0o700


def test_env_is_merged_over_a_copy_of_os_environ(
    make_spawner: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XL_SPAWN_INHERITED", "parent")
    monkeypatch.setenv("XL_SPAWN_OVERRIDDEN", "parent")
    snapshot = dict(os.environ)
    out = tmp_path / "env.txt"
    spawner = make_spawner(env={"XL_SPAWN_OVERRIDDEN": "child", "XL_SPAWN_NEW": "new"})
    code = (
        "import os; e = os.environ; "
        f"open({str(out)!r}, 'w').write(' '.join(e.get(k, '-') for k in "
        "['XL_SPAWN_INHERITED', 'XL_SPAWN_OVERRIDDEN', 'XL_SPAWN_NEW']))"
    )
    spawner.bootup(python_argv(code))
    assert spawner.wait(timeout=30) == 0
    assert out.read_text() == "parent child new"
    assert dict(os.environ) == snapshot
    assert "XL_SPAWN_NEW" not in os.environ


def test_stdin_is_devnull(make_spawner: Make, tmp_path: Path) -> None:
    out = tmp_path / "stdin.txt"
    spawner = make_spawner()
    spawner.bootup(python_argv(f"import sys; open({str(out)!r}, 'w').write(repr(sys.stdin.read()))"))
    assert spawner.wait(timeout=30) == 0
    assert out.read_text() == "''"


# -- lifecycle errors and description ------------------------------------------------------------------------


def test_bootup_twice_raises(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(SLEEP)
    with pytest.raises(RuntimeError, match="already called"):
        spawner.bootup(SLEEP)


def test_bootup_after_shutdown_raises(make_spawner: Make) -> None:
    spawner = make_spawner()
    assert spawner.shutdown() is None
    with pytest.raises(RuntimeError, match="after shutdown"):
        spawner.bootup(SLEEP)


def test_before_bootup(make_spawner: Make) -> None:
    spawner = make_spawner()
    for name in ("pid", "sentinel"):
        with pytest.raises(RuntimeError, match=r"call bootup\(argv\) first"):
            getattr(spawner, name)
    with pytest.raises(RuntimeError, match="bootup"):
        spawner.poll()
    with pytest.raises(RuntimeError, match="bootup"):
        spawner.wait(timeout=1)
    assert spawner.returncode is None
    assert spawner.describe() == "a process not started yet"


@pytest.mark.parametrize("argv", [[], "python", ["python", 3]], ids=["empty", "string", "non-str"])
def test_bad_argv_is_rejected(make_spawner: Make, argv: object) -> None:
    with pytest.raises(ValueError, match="non-empty sequence of strings"):
        make_spawner().bootup(argv)  # type: ignore[arg-type]


def test_missing_executable_raises_and_leaves_spawner_unused(make_spawner: Make, tmp_path: Path) -> None:
    spawner = make_spawner()
    with pytest.raises(FileNotFoundError):
        spawner.bootup([str(tmp_path / "no-such-program")])
    assert spawner.shutdown() is None


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf")])
def test_bad_terminate_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="terminate_timeout"):
        SubprocessSpawner(terminate_timeout=timeout)


def test_describe(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(python_module_argv("xl_spawn_no_such_module", ["--x", "a b"]))
    python = os.path.basename(sys.executable)
    assert spawner.describe() == f"pid {spawner.pid} ({python} -m xl_spawn_no_such_module --x 'a b')"
    spawner.wait(timeout=30)


def test_describe_truncates_long_commands(make_spawner: Make) -> None:
    spawner = make_spawner()
    spawner.bootup(["true", *["x" * 50] * 10])
    assert len(spawner.describe()) < 160
    assert spawner.describe().endswith("...)")


def test_is_a_spawner() -> None:
    spawner: Spawner = SubprocessSpawner()  # checked by mypy: SubprocessSpawner satisfies the protocol
    assert spawner.returncode is None

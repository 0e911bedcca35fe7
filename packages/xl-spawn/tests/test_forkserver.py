"""ForkServer: children forked from a warm parent run a module as ``python -m`` would, in their own session, cwd,
environment and sys.path; their exit is reported through the sentinel; nothing outlives close()."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from spawn_helpers import is_gone, read_when_written, wait_until
from xl_spawn import ForkServer

TIMEOUT = 30.0

PROBE = textwrap.dedent(
    """
    import json, os, sys
    out = sys.argv[1]
    with open(out, "w") as f:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "value": os.environ.get("XL_PROBE"),
                   "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "name": __name__,
                   "path": sys.path}, f)
    code = int(sys.argv[2])
    if code < 0:
        import time
        os.system("sleep 600 &")  # something left behind in the group
        time.sleep(600)
    sys.exit(code)
    """
)


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    """A directory holding module ``xl_probe_module``, reachable only through PYTHONPATH."""
    directory = tmp_path / "mods"
    directory.mkdir()
    (directory / "xl_probe_module.py").write_text(PROBE)
    return directory


@pytest.fixture
def server(sentinel_kind: str) -> Iterator[ForkServer]:
    """A server, its children's sentinels a pidfd or (where pidfds are refused) the pipe the exit report fills."""
    with ForkServer(["json"]) as forks:
        yield forks


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def _start(server: ForkServer, probe_dir: Path, out: Path, code: int, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    env = {"XL_PROBE": "seen", "PYTHONPATH": str(probe_dir)}
    child = server.spawner(cwd=cwd, env=env)
    child.bootup([sys.executable, "-m", "xl_probe_module", str(out), str(code)])
    return child


def test_a_child_runs_the_module_as_python_m_would(server: ForkServer, probe_dir: Path, tmp_path: Path) -> None:
    where = tmp_path / "made" / "here"
    child = _start(server, probe_dir, tmp_path / "out.json", 3, cwd=where)
    assert _readable(child.sentinel, TIMEOUT), "the sentinel did not turn readable at exit"
    assert child.wait(TIMEOUT) == 3
    seen = json.loads((tmp_path / "out.json").read_text())
    assert seen["argv"] == [str(tmp_path / "out.json"), "3"]
    assert seen["cwd"] == str(where)
    assert seen["value"] == "seen"
    assert seen["name"] == "__main__"
    assert seen["pid"] == child.pid != server.pid
    assert seen["pgid"] == seen["sid"] == child.pid, "the child leads a session of its own"
    assert seen["path"][:2] == [str(where), str(probe_dir)]
    child.shutdown()


def test_every_child_is_a_new_process(server: ForkServer, probe_dir: Path, tmp_path: Path) -> None:
    children = [_start(server, probe_dir, tmp_path / f"out{i}.json", 0) for i in range(4)]
    assert [child.wait(TIMEOUT) for child in children] == [0, 0, 0, 0]
    assert len({child.pid for child in children}) == 4
    for child in children:
        child.shutdown()


def test_shutdown_stops_the_child_and_what_it_left_in_its_group(
    server: ForkServer, probe_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    child = _start(server, probe_dir, out, -1)
    read_when_written(out, TIMEOUT)
    group = child.pid
    wait_until(lambda: len(_group_members(group)) >= 2, TIMEOUT, what="the child's leftover started")
    assert child.shutdown(wait=True) == -signal.SIGTERM
    wait_until(lambda: not _group_members(group), TIMEOUT, what="the child's group emptied")


def test_close_leaves_no_process(probe_dir: Path, tmp_path: Path) -> None:
    forks = ForkServer()
    assert forks.pid is None, "the server starts on first use"
    forks.start()  # ahead of the first fork
    assert forks.pid is not None
    out = tmp_path / "out.json"
    child = _start(forks, probe_dir, out, -1)
    read_when_written(out, TIMEOUT)
    server_pid = forks.pid
    assert server_pid is not None
    forks.close()
    assert child.wait(TIMEOUT) == -signal.SIGKILL
    wait_until(lambda: is_gone(child.pid) and is_gone(server_pid), TIMEOUT, what="server and child gone")
    child.shutdown()
    with pytest.raises(RuntimeError, match="closed"):
        forks.spawner().bootup([sys.executable, "-m", "json.tool"])


def test_a_command_that_is_not_python_m_is_refused(server: ForkServer) -> None:
    with pytest.raises(ValueError, match="SubprocessSpawner"):
        server.spawner().bootup(["true"])


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_a_child_stopped_at_once_ends_alone(server: ForkServer, probe_dir: Path, tmp_path: Path) -> None:
    """A child stopped right after its fork (an executor's spare at shutdown), before it dropped the server's
    signal handlers, ends by itself: it never runs the server's SIGTERM handler, which kills every child."""
    out = tmp_path / "running.json"
    running = _start(server, probe_dir, out, -1)  # runs until stopped, like a task
    read_when_written(out, TIMEOUT)
    for i in range(30):
        child = _start(server, probe_dir, tmp_path / f"out{i}.json", 0)
        child.shutdown(wait=False)  # the Kill follows the fork on the server's socket
        assert child.wait(TIMEOUT) in (0, -signal.SIGTERM)
    assert not _readable(running.sentinel, 0.2), "a sibling's stop killed the running child"
    assert running.shutdown(wait=True) == -signal.SIGTERM

"""``keep_stderr``: the child's stderr still reaches ours, and its last bytes stay readable after it exits."""

from __future__ import annotations

import time

import pytest
from spawn_helpers import python_argv
from xl_spawn import SubprocessSpawner


def test_tail_keeps_the_last_bytes_and_copies_everything(capfd: pytest.CaptureFixture[str]) -> None:
    code = "import sys; sys.stderr.write('x' * 5000 + 'é the end\\n'); sys.exit(4)"
    with SubprocessSpawner(keep_stderr=64) as spawner:
        spawner.bootup(python_argv(code))
        assert spawner.wait(timeout=30) == 4
        tail = spawner.stderr_tail(timeout=10)
    assert tail.endswith("é the end\n")
    assert len(tail.encode()) <= 64
    assert capfd.readouterr().err == "x" * 5000 + "é the end\n"


def test_without_keep_stderr_nothing_is_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with SubprocessSpawner() as spawner:
        spawner.bootup(python_argv("import sys; sys.stderr.write('inherited\\n')"))
        spawner.wait(timeout=30)
        assert spawner.stderr_tail() == ""
    assert "inherited" in capfd.readouterr().err


def test_tail_after_shutdown_of_a_running_child() -> None:
    code = "import sys, time; sys.stderr.write('started\\n'); sys.stderr.flush(); time.sleep(100)"
    spawner = SubprocessSpawner(keep_stderr=1024, terminate_timeout=5)
    spawner.bootup(python_argv(code))
    deadline = time.monotonic() + 30
    while "started" not in spawner.stderr_tail(timeout=0) and time.monotonic() < deadline:
        time.sleep(0.05)
    spawner.shutdown(wait=True)
    assert spawner.stderr_tail(timeout=10) == "started\n"


@pytest.mark.parametrize("value", [-1, True, 1.5])
def test_keep_stderr_must_be_a_byte_count(value: object) -> None:
    with pytest.raises(ValueError, match="keep_stderr"):
        SubprocessSpawner(keep_stderr=value)  # type: ignore[arg-type]

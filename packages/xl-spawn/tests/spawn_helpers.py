"""Helpers for the spawner tests: real processes, and every wait bounded by a deadline."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def python_argv(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    # Tests may poll (with a deadline); the library never does.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def read_when_written(path: Path, timeout: float = 10.0) -> str:
    """The text of ``path`` once a child has written it completely (children write to a temp name + rename)."""
    wait_until(path.exists, timeout, f"{path} to appear")
    return path.read_text()


def is_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs. An orphan that was killed stays a zombie when PID 1 does not reap."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def pidfd_works() -> bool:
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return False
    try:
        os.close(pidfd_open(os.getpid()))
    except OSError:
        return False
    return True

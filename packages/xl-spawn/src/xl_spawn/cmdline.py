"""Whether a pid still runs a given command: a recorded pid may have been recycled by an unrelated process."""

from __future__ import annotations

import os

__all__ = ["pid_runs"]


def pid_runs(pid: int, argument: str) -> bool:
    """True if process ``pid`` exists and its command line (``/proc/<pid>/cmdline``, Linux) contains
    ``argument``, e.g. the task file a worker was started with; False otherwise, also where ``/proc`` is absent."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, got {pid!r}")
    if not isinstance(argument, str) or not argument:
        raise ValueError(f"argument must be a non-empty str to look for in the command line, got {argument!r}")
    if pid <= 0:
        return False  # 0 and negative numbers name process groups, never one process
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return os.fsencode(argument) in handle.read()
    except OSError:
        return False

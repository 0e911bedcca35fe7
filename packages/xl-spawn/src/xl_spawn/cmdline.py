"""Questions about a pid from ``/proc``: does it still run a given command (a recorded pid may have been recycled
by an unrelated process), has it exited without being reaped yet."""

from __future__ import annotations

import os
import shutil
import subprocess

from xl_spawn.portable import forced

__all__ = ["pid_is_zombie", "pid_runs"]

#: how long ``ps`` may take before the pid counts as not running that command
PS_TIMEOUT_SECONDS = 10.0


def pid_runs(pid: int, argument: str) -> bool:
    """True if process ``pid`` exists and its command line contains ``argument``, e.g. the task file a worker was
    started with; False otherwise. The command line comes from ``/proc/<pid>/cmdline`` (Linux), else from
    ``ps -ww -o args= -p PID`` (POSIX; also with ``XL_PORTABLE=ps``); without either the answer is False."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, got {pid!r}")
    if not isinstance(argument, str) or not argument:
        raise ValueError(f"argument must be a non-empty str to look for in the command line, got {argument!r}")
    if pid <= 0:
        return False  # 0 and negative numbers name process groups, never one process
    if not forced("ps") and os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                return os.fsencode(argument) in handle.read()
        except OSError:
            return False
    return os.fsencode(argument) in _ps_command_line(pid)


def pid_is_zombie(pid: int) -> bool:
    """True if process ``pid`` has exited and is not reaped yet (state Z or X in ``/proc/<pid>/stat``); False if
    it runs, is gone, or there is no ``/proc`` (also with ``XL_PORTABLE=ps``) to ask. Sooner than a pidfd of a
    process with threads, which turns readable only once every thread has ended: a SIGKILLed worker's main thread
    is a zombie while its other threads are still being torn down."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, got {pid!r}")
    if pid <= 0 or forced("ps"):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")"
    fields = stat[stat.rfind(b")") + 1 :].split()
    return bool(fields) and fields[0] in (b"Z", b"X")


def _ps_command_line(pid: int) -> bytes:
    """The arguments of ``pid`` as ``ps`` prints them, joined by spaces (b"" if ``ps`` is missing or the pid is
    gone). ``-ww``: never cut to the terminal's width."""
    ps = shutil.which("ps")
    if ps is None:
        return b""
    try:
        done = subprocess.run(
            [ps, "-ww", "-o", "args=", "-p", str(pid)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PS_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return b""
    return done.stdout if done.returncode == 0 else b""

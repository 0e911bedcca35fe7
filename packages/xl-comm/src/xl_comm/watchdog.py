"""The worker's half of the lifeline where the kernel cannot kill it (no F_SETSIG, or ``XL_PORTABLE=watchdog``).

The spawner (``xl_spawn.SubprocessSpawner``) passes the read end of a pipe whose write end only the executor holds,
and names it in ``XL_LIFELINE`` as ``fd:device:inode``. A daemon thread blocks in a read of that pipe (no polling)
and, at end of file, which means the executor is gone however it died, kills the process group this worker leads.
It runs as soon as the interpreter lets it: user code that holds the GIL for long delays it, as it delays any
thread. The device and inode are checked first, so an fd number that means something else here (an MPI rank
that did not inherit the pipe) is left alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading

__all__ = ["LIFELINE_VARIABLE", "start_watchdog"]

#: the same name as ``xl_spawn.LIFELINE_VARIABLE`` (a cross-package test keeps them equal; xl-comm does not
#: import xl-spawn)
LIFELINE_VARIABLE = "XL_LIFELINE"


def start_watchdog() -> threading.Thread | None:
    """Start the watchdog if ``XL_LIFELINE`` names a pipe this process inherited; the thread, else None. The
    variable is removed and the fd made non-inheritable, so the user's subprocesses do not watch it too."""
    value = os.environ.pop(LIFELINE_VARIABLE, "")
    try:
        fd, device, inode = (int(part) for part in value.split(":"))
        status = os.fstat(fd)
    except (ValueError, OSError):
        return None  # not set, malformed, or not open here
    if (status.st_dev, status.st_ino) != (device, inode) or not stat.S_ISFIFO(status.st_mode):
        return None
    os.set_inheritable(fd, False)
    thread = threading.Thread(target=_watch, args=(fd,), name="xl-comm-watchdog", daemon=True)
    thread.start()
    return thread


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 4096):  # nobody writes; only end of file ends the read
            pass
    except OSError:
        return  # the fd was closed under us (user code): no news of the executor, so no kill
    # The executor is gone: end everything this worker leads (the spawner made it a session and group leader).
    import signal  # here, not at the top: the signal module's enums cost every worker's start about 1 ms

    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)

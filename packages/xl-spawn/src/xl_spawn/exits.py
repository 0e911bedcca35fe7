"""An fd that turns readable when a process exits, without reaping it: what a thread waits on next to its sockets.

A pidfd (``os.pidfd_open``, Linux >= 5.3) where the kernel allows one. Otherwise the read end of a pipe that a
daemon waiter thread writes one byte to once the process has exited; the thread blocks in
``os.waitid(..., WEXITED | WNOWAIT)`` for a child of this process, or in ``kqueue`` (``NOTE_EXIT``, macOS and
BSD) for any process. Neither reaps: the exit status stays with whoever owns the ``Popen``. ``XL_PORTABLE=waiter``
picks the waiter thread on Linux too, to test it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from typing import Any

from xl_spawn.portable import forced

__all__ = ["UnwatchableProcessError", "exit_fd"]

logger = logging.getLogger(__name__)


class UnwatchableProcessError(OSError):
    """No way to learn, without polling, when this process exits (not our child, and no pidfd or kqueue)."""


def exit_fd(pid: int, *, child: bool) -> int:
    """An fd (the caller closes it) that turns readable once process ``pid`` has exited; ``child``: ``pid`` is a
    child of this process (``waitid`` works on children only). Raises ``ProcessLookupError`` if ``pid`` is gone
    (pidfd, kqueue) and :class:`UnwatchableProcessError` for a non-child where neither pidfd nor kqueue exists."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None and not forced("waiter"):
        try:
            fd: int = pidfd_open(pid)
            return fd
        except ProcessLookupError:
            raise
        except OSError as exc:
            # ENOSYS on kernels before 5.3, EPERM under some container seccomp profiles.
            logger.debug("pidfd_open(%d) failed (%s); using a waiter thread", pid, exc)
    if child and hasattr(os, "waitid"):
        wait = _waitid
    else:
        kqueue = getattr(select, "kqueue", None)
        if kqueue is None:
            raise UnwatchableProcessError(
                f"cannot watch pid {pid} for its exit: it is not our child and this system has neither "
                "pidfd_open nor kqueue"
            )
        wait = _kqueue_waiter(kqueue(), pid)  # registered here, so a pid already gone raises here
    read_fd, write_fd = os.pipe()
    try:
        threading.Thread(
            target=_signal_exit, args=(wait, pid, write_fd), name=f"xl-spawn-sentinel-{pid}", daemon=True
        ).start()
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    return read_fd


def _signal_exit(wait: Any, pid: int, write_fd: int) -> None:
    try:
        wait(pid)
    finally:
        # One byte, not just EOF: a pipe at EOF polls as POLLHUP only, which zmq.Poller reports as an error instead
        # of POLLIN. EPIPE when the reader closed its end already: nobody waits any more.
        with contextlib.suppress(OSError):
            os.write(write_fd, b"x")
        os.close(write_fd)


def _waitid(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # already reaped by its Popen: it has exited all the same
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def _kqueue_waiter(queue: Any, pid: int) -> Any:
    """Register ``pid``'s exit with ``queue`` now; the returned function blocks until it happens. (macOS and BSD
    only: Linux has no kqueue, so this path is not run by the tests here.)"""
    event = select.kevent(  # type: ignore[attr-defined,unused-ignore]
        pid,
        filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined,unused-ignore]
        flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,  # type: ignore[attr-defined,unused-ignore]
        fflags=select.KQ_NOTE_EXIT,  # type: ignore[attr-defined,unused-ignore]
    )
    try:
        queue.control([event], 0, 0)
    except BaseException:
        queue.close()
        raise

    def wait(_: int) -> None:
        try:
            queue.control(None, 1, None)
        finally:
            queue.close()

    return wait

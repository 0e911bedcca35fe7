"""Futures whose ``result()`` takes its own reply off the hub's socket.

A caller blocked in ``result()`` would otherwise be woken by the hub's IO thread after that thread read the reply:
one thread wake-up more per call than a plain request-reply, which on a virtual machine is the largest single
cost of a small task. While such a caller waits, it reads the socket itself (see :meth:`Hub.assist`); anything
that completes its Future on another thread (a dead worker, ``cancel()``, another helping caller) pokes the
caller's own eventfd, so the wait always ends with the Future.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xl_comm.hub import Hub


class Waiter:
    """One thread's eventfd, to wake that thread while it sleeps on a hub's socket. Made once per thread."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.ident = threading.get_ident()

    def poke(self) -> None:
        os.eventfd_write(self.fd, 1)

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)

    def __del__(self) -> None:
        # Whoever pokes holds a reference, so the fd cannot be closed (and its number reused) under a poke.
        with contextlib.suppress(OSError):
            os.close(self.fd)


_threads = threading.local()


def thread_waiter() -> Waiter:
    """The calling thread's waiter (dropped, and its fd closed, when the thread ends)."""
    waiter: Waiter | None = getattr(_threads, "waiter", None)
    if waiter is None:
        waiter = _threads.waiter = Waiter()
    return waiter


class AssistedFuture(Future[Any]):
    """A Future completed by a hub's reply: ``result()`` and ``exception()`` help the hub while they wait.

    Everything else is the stdlib Future; ``concurrent.futures.wait`` and ``as_completed`` work unchanged (the
    hub's IO thread then reads the reply, as it does for every Future nobody waits on).
    """

    #: the hub to help, held weakly so that a kept Future does not keep a closed hub's state alive
    hub_ref: weakref.ref[Hub] | None = None
    #: set while a thread helps for this Future, so completing it elsewhere can wake that thread
    assisted_by: Waiter | None = None

    def result(self, timeout: float | None = None) -> Any:
        if self.hub_ref is not None and not self.done():
            hub = self.hub_ref()
            if hub is not None:
                timeout = hub.assist(self, timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self.hub_ref is not None and not self.done():
            hub = self.hub_ref()
            if hub is not None:
                timeout = hub.assist(self, timeout)
        return super().exception(timeout)

    def set_result(self, result: Any) -> None:
        super().set_result(result)
        self._wake_helper()

    def set_exception(self, exception: BaseException | None) -> None:
        super().set_exception(exception)
        self._wake_helper()

    def cancel(self) -> bool:
        cancelled = super().cancel()
        if cancelled:
            self._wake_helper()
        return cancelled

    def _wake_helper(self) -> None:
        waiter = self.assisted_by
        if waiter is not None and waiter.ident != threading.get_ident():
            waiter.poke()

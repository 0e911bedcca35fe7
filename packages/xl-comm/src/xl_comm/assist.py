"""Futures whose ``result()`` takes its own reply off the hub's socket.

A caller blocked in ``result()`` would otherwise be woken by the hub's IO thread after that thread read the reply:
one thread wake-up more per call than a plain request-reply, which on a virtual machine is the largest single
cost of a small task. While such a caller waits, it reads the socket itself (see :meth:`Hub.assist`); anything
that completes its Future on another thread (a dead worker, ``cancel()``, another helping caller) pokes the
caller's own eventfd (a pipe where there is none), so the wait always ends with the Future.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from xl_comm.portable import forced


class Waiter:
    """One thread's wake-up fd, to wake that thread while it sleeps on a hub's socket. Made once per thread.

    An eventfd on Linux; a non-blocking pipe where ``os.eventfd`` is missing (or ``XL_PORTABLE=pipe``)."""

    def __init__(self) -> None:
        self.ident = threading.get_ident()
        self._write_fd = -1
        if hasattr(os, "eventfd") and not forced("pipe"):
            self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._write_fd, False)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._socket_fd = -1

    def poke(self) -> None:
        if self._write_fd < 0:
            os.eventfd_write(self.fd, 1)
            return
        with contextlib.suppress(BlockingIOError):  # a full pipe wakes the thread all the same
            os.write(self._write_fd, b"x")

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            if self._write_fd < 0:
                os.eventfd_read(self.fd)
            else:
                while os.read(self.fd, 4096):
                    pass

    def sleep(self, socket_fd: int, timeout: float | None) -> bool:
        """Block until ``socket_fd`` turns readable, a poke arrives, or ``timeout`` seconds pass; whether
        ``socket_fd`` is readable."""
        if socket_fd != self._socket_fd:
            if self._socket_fd >= 0:
                self._poll.unregister(self._socket_fd)
            self._poll.register(socket_fd, select.POLLIN)
            self._socket_fd = socket_fd
        readable = False
        for fd, _ in self._poll.poll(None if timeout is None else max(0.0, timeout) * 1000):
            if fd == self.fd:
                self._drain()
            else:
                readable = True
        return readable

    def __del__(self) -> None:
        # Whoever pokes holds a reference, so the fds cannot be closed (and their numbers reused) under a poke.
        for fd in (self.fd, self._write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


_threads = threading.local()


def thread_waiter() -> Waiter:
    """The calling thread's waiter (dropped, and its fd closed, when the thread ends)."""
    waiter: Waiter | None = getattr(_threads, "waiter", None)
    if waiter is None:
        waiter = _threads.waiter = Waiter()
    return waiter


def _new_waiter_after_fork() -> None:
    # A forked child must not share its parent's eventfd: pokes meant for one would wake the other.
    _threads.waiter = None


os.register_at_fork(after_in_child=_new_waiter_after_fork)


class Assistant(Protocol):
    """What an AssistedFuture needs of the hub that completes it (:meth:`xl_comm.Hub.assist`); a protocol, so
    this module does not import the hub, which imports it."""

    def assist(self, future: AssistedFuture, timeout: float | None) -> float | None: ...


class AssistedFuture(Future[Any]):
    """A Future completed by a hub's reply: ``result()`` and ``exception()`` help the hub while they wait.

    Everything else is the stdlib Future; ``concurrent.futures.wait`` and ``as_completed`` work unchanged (the
    hub's IO thread then reads the reply, as it does for every Future nobody waits on).
    """

    #: the hub to help (a weak reference: called, the hub or None), so that a kept Future does not keep a closed
    #: hub's state alive
    hub_ref: Callable[[], Assistant | None] | None = None
    #: set while a thread helps for this Future, so completing it elsewhere can wake that thread
    assisted_by: Waiter | None = None
    #: done() without taking the Future's lock; set by the first done-callback, which every way of completing
    #: a Future runs (also ``Future.set_result(future, ...)`` called past a subclass's override)
    completed = False

    def __init__(self) -> None:
        super().__init__()
        # add_done_callback without its lock round trip: nobody else can see this Future yet
        self._done_callbacks.append(_completed)  # type: ignore[attr-defined]

    def result(self, timeout: float | None = None) -> Any:
        if self.hub_ref is not None and not self.completed:
            hub = self.hub_ref()
            if hub is not None:
                timeout = hub.assist(self, timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self.hub_ref is not None and not self.completed:
            hub = self.hub_ref()
            if hub is not None:
                timeout = hub.assist(self, timeout)
        return super().exception(timeout)


def _completed(future: Future[Any]) -> None:
    assert isinstance(future, AssistedFuture)
    future.completed = True
    waiter = future.assisted_by
    if waiter is not None and waiter.ident != threading.get_ident():
        waiter.poke()

"""The executor side of the wire: one ROUTER socket and one IO thread for all workers of an executor.

The IO thread blocks in ``epoll`` (``poll`` where epoll is missing, see :mod:`xl_comm.pollers`) on three kinds
of handle at once and never sleeps in a loop:

* the ROUTER socket (hellos and replies from workers),
* a wake-up pipe (calls handed over by other threads: sends, new sentinels, shutdown),
* each worker's process sentinel (an fd that turns readable when the process exits),

with the poll timeout set by the nearest timer. Handler callbacks run one at a time, under the hub's loop lock:
on the IO thread, or on a caller blocked in ``result()`` that reads its own reply meanwhile (see
:mod:`xl_comm.assist`); a Future's done-callbacks thus run on either.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import secrets
import select
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import zmq
from xl_serial import Frame, capture

from xl_comm.assist import AssistedFuture, Waiter, thread_waiter
from xl_comm.framing import (
    AuthenticationError,
    BodyError,
    Header,
    Prepared,
    ProtocolError,
    new_key,
    open_batch,
    open_body,
    open_received,
    pack_batch,
    pack_body,
    prepare,
    seal,
)
from xl_comm.keys import KeyFiles
from xl_comm.messages import TO_EXECUTOR, Failure, Hello, Kind, Message, Result
from xl_comm.pollers import PollPoller, new_poller
from xl_comm.portable import forced
from xl_comm.shared import HubMailbox, available
from xl_comm.sockets import NOBLOCK, input_pending, recv_routed, send_frames, try_recv_routed

log = logging.getLogger(__name__)

#: zmq heartbeats detect a peer on another host that vanished without closing its connection.
HEARTBEAT_MS = 5_000
#: At most this many authenticated hellos wait for their worker to be expected (see Hub.expect).
MAX_HELD_HELLOS = 1024
#: Rejected messages are logged once at WARNING, then summed up at most once per this many seconds.
REJECT_LOG_SECONDS = 60.0


class HubHandler(Protocol):
    """What the owner of a hub is told. Methods run one at a time under the hub's loop lock, on the IO thread or on
    a caller helping in ``result()`` (see :meth:`Hub.in_io_thread`), never concurrently."""

    def on_hello(self, worker_id: int, hello: Hello) -> None: ...

    def on_reply(self, worker_id: int, task_id: int, reply: Result | Failure) -> None: ...

    def on_exit(self, worker_id: int) -> None: ...


def _bind(router: zmq.Socket[Any], key: bytes, *, localhost: bool, same_host: bool) -> tuple[str, HubMailbox | None]:
    """Bind the socket; with an abstract unix address, the mailbox (xl_comm.shared) is bound first, so no other
    process can take its name, derived from the address, once the address is seen."""
    # Abstract unix sockets are a Linux kernel feature with no harmless probe (elsewhere zmq would make a file
    # named "@..." in the working directory), hence the platform check.
    if same_host and localhost and sys.platform == "linux" and not forced("tcp"):
        address = f"ipc://@xl-comm-{os.getpid()}-{secrets.token_hex(8)}"
        mailbox = None
        if available(address):
            try:
                mailbox = HubMailbox(key, address)
            except OSError as problem:  # large buffers then travel as frames
                log.warning("no shared memory for large buffers: %s", problem)
        try:
            router.bind(address)
        except BaseException:
            if mailbox is not None:
                mailbox.close()
            raise
        return address, mailbox
    port = router.bind_to_random_port("tcp://127.0.0.1" if localhost else "tcp://*")
    return f"tcp://{'127.0.0.1' if localhost else socket.gethostname()}:{port}", None


class Hub:
    """Owns the socket, the wake-up pipe and the IO thread. ``close()`` releases all three."""

    def __init__(
        self, handler: HubHandler, *, localhost: bool = True, same_host: bool = False, key: bytes | None = None
    ) -> None:
        """``localhost``: bind to loopback, else to every interface (workers on other hosts). ``same_host``: every
        worker runs on this host (subprocesses, a local mpiexec), so the socket is a Linux abstract unix socket,
        which costs less per message than loopback TCP and leaves no file behind."""
        self.key = key if key is not None else new_key()
        self._key_files = KeyFiles(self.key)
        self._handler = handler
        self._context = zmq.Context(io_threads=1)
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        self._router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * HEARTBEAT_MS)
        # Large buffers to and from workers on this host go through sealed shared memory (xl_comm.shared).
        self.address, self._mailbox = _bind(self._router, self.key, localhost=localhost, same_host=same_host)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()
        self._calls: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._identities: dict[int, bytes] = {}
        self._sent: dict[int, int] = {}
        self._received: dict[int, int] = {}
        self._sentinels: dict[int, int] = {}
        self._expected: set[int] = set()
        # Authenticated hellos of workers not expected yet: a worker may say hello before the thread that spawned
        # it gets to expect() it (that thread can be held up by the GIL); such a hello waits here, never dropped.
        self._held: dict[int, tuple[bytes, Sequence[Any]]] = {}
        self._rejects = _RejectLog()
        # Guards the socket and the per-worker routing state: any thread may send (see send_packed).
        self._socket_lock = threading.RLock()
        self._closing = False
        self._stopping = False
        #: messages dropped because they failed authentication or were not protocol messages
        self.rejected = 0
        # The socket's own fd, not the socket: other threads use the socket meanwhile (under the lock), which a
        # zmq poll inside this thread would not allow. The fd only says "look at zmq.EVENTS", so every turn
        # ends by draining the socket. Every handle is an fd, so plain epoll serves (zmq.Poller rebuilds its
        # item list in Python on every call).
        router_fd = self._router.getsockopt(zmq.FD)
        assert isinstance(router_fd, int)
        self._router_fd = router_fd
        self._poller = new_poller()
        # select.poll (unlike epoll) does not see a modify() made while it waits
        self._poller_snapshots = isinstance(self._poller, PollPoller)
        self._poller.register(self._router_fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        if self._mailbox is not None:  # drained as datagrams arrive, so its short queue never fills
            self._poller.register(self._mailbox.fileno(), select.POLLIN)
        # Held by whoever reads the socket and runs handler callbacks: the IO thread, or a caller helping in
        # assist(). Callbacks therefore never run concurrently, whichever thread runs them.
        self._loop_lock = threading.Lock()
        self._loop_owner = 0
        self._helpers: set[Waiter] = set()
        # The thread whose zmq.EVENTS check, showing no input, was the last operation on the socket (else 0).
        self._quiet_for = 0
        #: what Futures completed by this hub's replies hold (see xl_comm.assist)
        self.ref = weakref.ref(self)
        self._io_ident = -1
        self._thread = threading.Thread(target=self._run, name="xl-comm-hub", daemon=True)
        self._thread.start()
        self._io_ident = self._thread.ident or -1

    # -- called from any thread -------------------------------------------------------------------------------

    def worker_args(self, worker_id: int) -> list[str]:
        """Command-line arguments for ``python -m xl_comm.worker`` (no secret among them)."""
        return ["--address", self.address, "--worker-id", str(worker_id)]

    def worker_env(self, key_directory: str | None = None) -> dict[str, str]:
        """Environment entries for one worker start: the name of a new key file, which the worker deletes once
        read (the key itself stays out of the environment). ``key_directory``: where the file is made, when the
        worker runs on another host (see :class:`xl_comm.keys.KeyFiles`)."""
        return self._key_files.environment(key_directory)

    def expect(self, worker_id: int, sentinel: int | None) -> None:
        """Accept a hello from ``worker_id``; report ``on_exit`` when ``sentinel`` (an fd) turns readable.

        The hub watches a duplicate of ``sentinel``, so the spawner may close its own fd at any time. It may be
        called after the worker started and even after its hello arrived: that hello was held and is handled now.
        """
        watched = os.dup(sentinel) if sentinel is not None else None
        self.call_soon(lambda: self._expect(worker_id, watched))

    def send(self, worker_id: int, message: Message, *, task_id: int = 0) -> None:
        """Send ``message`` to a worker that said hello (pickled here, in the caller's thread)."""
        self.send_packed(worker_id, message.kind, pack_body(message), task_id=task_id)

    def send_packed(self, worker_id: int, kind: Kind, body: Sequence[Frame], *, task_id: int = 0) -> None:
        """Send a body pickled earlier by :func:`xl_comm.framing.pack_body`, e.g. at submit time, so pickling
        errors surface where they can fail one Future.

        The calling thread sends itself, under the socket lock, instead of handing the send to the IO thread:
        that hand-off costs a thread wake-up per task. A send can swallow the edge of ``zmq.FD`` that announced
        an incoming message, so the IO thread is woken when input is left pending.
        """
        ident = threading.get_ident()
        on_io_thread = self._in_loop(ident)
        # Large buffers are written into memfds and tagged before the lock: a 1 GB array takes half a second, which
        # would hold up every other send and the reading of every reply.
        prepared = prepare(self.key, body) if self._mailbox is not None and len(body) > 1 else None
        try:
            with self._socket_lock:
                self._send(worker_id, kind, task_id, body, prepared)
                # The IO thread drains the socket before it next sleeps; only another thread must check.
                missed = not on_io_thread and not self._closing and input_pending(self._router)
                if not on_io_thread and not missed:
                    self._quiet_for = ident  # see _help: this thread may sleep on the fd without checking again
        finally:
            if prepared is not None:
                prepared.close()
        if missed:
            self._wake()

    def send_batch(self, worker_id: int, tasks: Sequence[tuple[int, Sequence[Frame]]]) -> None:
        """Send several pre-pickled Task bodies, ``(task_id, body)``, as one message; the worker runs them in order
        and may answer them together."""
        body = pack_batch([(Kind.TASK, task_id, frames) for task_id, frames in tasks])
        self.send_packed(worker_id, Kind.BATCH, body)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the IO thread (at once when already there)."""
        if threading.get_ident() == self._io_ident:
            fn()
            return
        self._calls.append(fn)
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:  # the lock keeps a write from racing the close of the pipe in _teardown
            if self._wake_w < 0:
                return
            with contextlib.suppress(BlockingIOError):  # pipe full: the IO thread is awake anyway
                os.write(self._wake_w, b"\0")

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the IO thread after ``delay`` seconds."""
        deadline = time.monotonic() + delay
        self.call_soon(lambda: heapq.heappush(self._timers, (deadline, next(self._timer_ids), fn)))

    def forget(self, worker_id: int) -> None:
        """Drop everything known about a worker that is gone."""
        self.call_soon(lambda: self._forget(worker_id))

    def close(self) -> None:
        """Stop the IO thread and close socket, pipe and watched sentinels. Idempotent."""
        self._key_files.close()
        if self._thread.is_alive():
            self.call_soon(self._stop)
            if not self.in_io_thread():
                self._thread.join()

    def in_io_thread(self) -> bool:
        """Whether the caller runs the hub's loop: the IO thread, or a handler callback on a caller that helps
        (see assist). It must not wait for the loop, which is itself."""
        return self._in_loop(threading.get_ident())

    def _in_loop(self, ident: int) -> bool:
        return ident == self._io_ident or ident == self._loop_owner

    def future(self) -> AssistedFuture:
        """A Future to be completed from a reply of this hub; its ``result()`` helps the hub while it waits."""
        future = AssistedFuture()
        future.hub_ref = self.ref
        return future

    def assist(self, future: AssistedFuture, timeout: float | None) -> float | None:
        """Wait for ``future`` (at most ``timeout`` seconds) by reading the socket in this thread meanwhile, so
        the reply that completes it needs no hand-over from the IO thread; returns the time left of ``timeout``.

        The IO thread stops watching the socket while a caller helps, and watches it again when the last
        helper leaves. Does nothing on the IO thread or in a callback, for a Future another thread already
        waits on this way, or once the hub closes: the caller then waits on the Future as usual.
        """
        waiter = thread_waiter()
        if future.assisted_by is not None or self._in_loop(waiter.ident):
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._socket_lock:
            if self._closing:
                return timeout
            future.assisted_by = waiter
            self._helpers.add(waiter)
            muted = len(self._helpers) == 1
            if muted:  # muted rather than removed: two modify calls cost half a remove and add
                self._poller.modify(self._router_fd, 0)
        try:
            if muted and self._poller_snapshots:
                self._wake()  # a poll() under way watches the mask it started with: start it again, muted
            self._help(future, waiter, deadline)
        finally:
            future.assisted_by = None
            with self._socket_lock:
                self._helpers.discard(waiter)
                unmuted = not self._helpers and not self._closing
                if unmuted:
                    self._poller.modify(self._router_fd, select.POLLIN)
            if unmuted and self._poller_snapshots:
                self._wake()  # a poll() under way watches the muted mask it started with: start it again
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _help(self, future: AssistedFuture, waiter: Waiter, deadline: float | None) -> None:
        signalled = False
        if self._quiet_for == waiter.ident:
            # Nothing touched the socket since this thread saw it empty (typically: right after it sent the task),
            # so its fd will signal the next message: sleep at once instead of draining first.
            signalled = waiter.sleep(self._router_fd, None if deadline is None else deadline - time.monotonic())
        while not future.completed:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            if not self._loop_lock.acquire(timeout=-1 if left is None else left):
                return
            try:
                if self._closing:
                    return
                self._loop_owner = waiter.ident
                self._receive_all(signalled)
            finally:
                self._loop_owner = 0
                self._loop_lock.release()
            if future.completed:
                return
            # Sleep until the socket signals or the Future is completed elsewhere (its waiter is poked).
            signalled = waiter.sleep(self._router_fd, None if deadline is None else deadline - time.monotonic())

    @property
    def held_hellos(self) -> int:
        """Hellos of workers that authenticated but were not expected yet (they are handled once expected)."""
        return len(self._held)

    @property
    def closed(self) -> bool:
        return not self._thread.is_alive()

    # -- the IO thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        try:
            while not self._stopping:
                events = self._poller.poll(self._timeout())
                with self._loop_lock:
                    self._turn(events)
        except Exception:  # pragma: no cover - a bug here must be loud, never a silent hang
            log.exception("xl-comm hub IO thread failed")
            raise
        finally:
            self._teardown()

    def _turn(self, events: list[tuple[int, int]]) -> None:
        for fd, _ in events:
            if fd == self._wake_r:
                self._run_calls()
            elif self._mailbox is not None and fd == self._mailbox.fileno():
                self._mailbox.drain()
            elif fd in self._sentinels:
                self._exited(fd)
        if self._timers:
            self._run_timers()
        self._receive_all()  # last: whatever ran above may have swallowed the socket fd's signal

    def _timeout(self) -> float:
        """Seconds until the next timer (epoll's -1: none)."""
        if self._calls:
            return 0
        if not self._timers:
            return -1
        return max(0.0, self._timers[0][0] - time.monotonic()) + 0.001

    def _run_calls(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self._calls:
            self._guarded(self._calls.popleft())

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            self._guarded(fn)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        # BaseException: a payload or a user's done-callback may raise SystemExit or KeyboardInterrupt, and the
        # loop must outlive it, or every later Future of this hub would wait forever.
        try:
            fn(*args)
        except BaseException:
            log.exception("callback on the xl-comm hub IO thread raised")

    def _expect(self, worker_id: int, sentinel: int | None) -> None:
        self._expected.add(worker_id)
        if sentinel is not None:
            self._sentinels[sentinel] = worker_id
            self._poller.register(sentinel, select.POLLIN)
        held = self._held.pop(worker_id, None)
        if held is not None:
            self._receive(*held)

    def _exited(self, fd: int) -> None:
        worker_id = self._sentinels.pop(fd)
        self._poller.unregister(fd)
        os.close(fd)
        self._guarded(self._handler.on_exit, worker_id)

    def _forget(self, worker_id: int) -> None:
        self._expected.discard(worker_id)
        self._held.pop(worker_id, None)
        with self._socket_lock:
            self._identities.pop(worker_id, None)
            self._sent.pop(worker_id, None)
        self._received.pop(worker_id, None)
        if self._mailbox is not None:
            self._mailbox.forget(worker_id)
        for fd, owner in list(self._sentinels.items()):
            if owner == worker_id:
                del self._sentinels[fd]
                self._poller.unregister(fd)
                os.close(fd)

    def _send(
        self, worker_id: int, kind: Kind, task_id: int, body: Sequence[Frame], prepared: Prepared | None = None
    ) -> None:
        if self._closing:
            return
        identity = self._identities.get(worker_id)
        if identity is None:
            log.debug("dropping %s for worker %d: it is not connected", kind.name, worker_id)
            return
        self._quiet_for = 0
        seq = self._sent[worker_id] = self._sent.get(worker_id, 0) + 1
        frames = seal(self.key, Header(kind, worker_id, seq, task_id), body, self._mailbox, prepared)
        try:
            send_frames(self._router, [identity, *frames])
        except zmq.ZMQError as problem:  # the worker disconnected; its sentinel reports the exit
            log.debug("send to worker %d failed: %s", worker_id, problem)

    def _receive_all(self, signalled: bool = False) -> None:
        """Handle every message waiting on the socket. ``signalled``: its fd just turned readable, so a message
        most likely waits and is received without asking first (one zmq call less on a reply's path)."""
        while True:
            with self._socket_lock:
                self._quiet_for = 0
                if self._closing:
                    return
                if signalled:
                    signalled = False
                    message = try_recv_routed(self._router)
                    if message is None:
                        return
                # Otherwise ask first: a failing non-blocking recv raises zmq.Again, which costs more than asking.
                elif input_pending(self._router):
                    message = recv_routed(self._router, NOBLOCK)
                else:
                    return
            self._receive(*message)

    def _receive(self, identity: bytes, frames: Sequence[Any]) -> None:
        try:
            header, frames, lost = open_received(self.key, frames, self._mailbox)
        except (AuthenticationError, ProtocolError) as problem:
            self._reject("a message on %s: %s", self.address, problem)
            return
        wid = header.worker_id
        hello = header.kind == Kind.HELLO
        if hello and wid not in self._expected and wid not in self._held and len(self._held) < MAX_HELD_HELLOS:
            self._held[wid] = (identity, frames)  # authenticated: one of ours, spawned but not expected yet
            log.debug("holding the hello of worker %d until it is expected", wid)
            return
        if header.kind not in TO_EXECUTOR or wid not in self._expected or header.seq <= self._received.get(wid, 0):
            self._reject("an out-of-place %s message claiming worker %d", header.kind.name, wid)
            return
        if hello and self._mailbox is not None:
            # The worker registered its mailbox before its hello: acknowledge it before any task can be sent, so
            # even the first answer may use shared memory.
            self._mailbox.drain()
        # No socket lock: one dict operation is atomic, and _forget runs under the same loop lock as this.
        known = self._identities.setdefault(wid, identity) if hello else self._identities.get(wid)
        if known != identity:
            self._reject("a message for worker %d from another connection", wid)
            return
        self._received[wid] = header.seq
        if lost is not None and header.kind == Kind.REPLIES:  # its tasks are named inside the lost body
            log.error("lost the answers of worker %d: %s", wid, lost)
            return
        if header.kind == Kind.REPLIES:
            self._receive_replies(wid, header, frames)
            return
        try:
            message = open_body(header, frames, lost)
        except BodyError as problem:
            if header.kind == Kind.HELLO:
                return
            self._guarded(self._handler.on_reply, wid, header.task_id, _unreadable(wid, problem))
            return
        if isinstance(message, (Result, Failure)):  # the common case first
            self._guarded(self._handler.on_reply, wid, header.task_id, message)
        elif isinstance(message, Hello):
            self._guarded(self._handler.on_hello, wid, message)

    def _receive_replies(self, wid: int, header: Header, frames: Sequence[Any]) -> None:
        try:
            members = open_batch(header, frames)
        except BodyError as problem:
            log.warning("dropped a malformed batch of replies from worker %d: %s", wid, problem)
            return
        for member, decoded in members:
            if isinstance(decoded, BodyError):
                decoded = _unreadable(wid, decoded)
            if isinstance(decoded, (Result, Failure)):
                self._guarded(self._handler.on_reply, wid, member.task_id, decoded)

    def _reject(self, what: str, *args: Any) -> None:
        self.rejected += 1
        self._rejects.note(what, *args)

    def _stop(self) -> None:
        self._stopping = True

    def _teardown(self) -> None:
        for fd in self._sentinels:
            os.close(fd)
        self._sentinels.clear()
        with self._socket_lock:
            self._closing = True
            for waiter in self._helpers:  # back to a plain wait on their Futures
                waiter.poke()
            self._poller.close()
            self._router.close(linger=0)
            if self._mailbox is not None:
                self._mailbox.close()
        self._context.term()
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = -1


def _unreadable(worker_id: int, problem: BodyError) -> Failure:
    """The Failure for a reply that does not unpickle here."""
    return Failure(capture(problem.reportable(), origin=f"the executor reading worker {worker_id}'s reply"))


class _RejectLog:
    """Logs rejected messages without letting a rogue peer flood the log: at most one WARNING per
    REJECT_LOG_SECONDS, which counts the ones in between (each of those at DEBUG)."""

    def __init__(self) -> None:
        self._count = 0
        self._next_report = 0.0

    def note(self, what: str, *args: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now < self._next_report:
            log.debug("rejected " + what, *args)
            return
        if self._count == 1:
            log.warning("rejected " + what, *args)
        else:
            log.warning("rejected %d foreign or out-of-place messages, the latest " + what, self._count, *args)
        self._count = 0
        self._next_report = now + REJECT_LOG_SECONDS

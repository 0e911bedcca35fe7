"""The worker's library: the loop that receives, runs and answers tasks over one DEALER socket, the guard that
ends an orphaned worker, and connecting and closing. ``python -m xl_comm.worker`` (:mod:`xl_comm.worker`) and the
MPI ranks (:mod:`xl_comm.mpi_worker`) are built on it.

The key comes from the caller (see :mod:`xl_comm.keys`), never from a command line. A watchdog thread ends the
worker, and the process group it leads, as soon as the executor's end of the connection goes away, so a killed
executor leaves no workers behind.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import zmq
from xl_serial import Frame

from xl_comm.framing import (
    BodyError,
    Header,
    Mailbox,
    ProtocolError,
    open_batch,
    open_body,
    open_received,
    pack_batch,
    pack_body,
    seal,
)
from xl_comm.messages import TO_WORKER, Failure, Init, Kind, Message, Result, Shutdown, Task
from xl_comm.sockets import recv_frames, send_frames

if TYPE_CHECKING:
    from xl_serial import RemoteError

# Imported where used, not here: what only a failure or a departure needs (xl_serial's capture and
# function_name, signal) is left out of every worker's start (issue 17, row 15).

#: A batch that has run this long sends the answers it has so far (tiny tasks are batched; slow ones are not).
FLUSH_AFTER_SECONDS = 0.002

#: Exit status of a worker that lost its executor (EX_SOFTWARE would blame the worker; 75 is EX_TEMPFAIL).
EXIT_ORPHANED = 75

#: The parameter names whose values the worker supplies (unless the caller passes them); see ``presets``.
WORKER_ID_NAME = "executorlib_worker_id"
WORKER_INDEX_NAME = "executorlib_worker_index"


def presets(worker_index: int, one_shot: bool) -> dict[str, int]:
    """The values a function gets for the reserved parameters (pure). ``executorlib_worker_index`` is the worker's
    index, distinct among the workers running at once. ``executorlib_worker_id`` is the same number for a
    long-lived worker (stable over its tasks), and always 0 for a one-shot worker: executorlib 1.x gives every call
    of its one-process-per-call mode 0, and code written for it (one scratch folder per worker id) relies on that.

    >>> presets(3, one_shot=True)
    {'executorlib_worker_id': 0, 'executorlib_worker_index': 3}
    """
    return {WORKER_ID_NAME: 0 if one_shot else worker_index, WORKER_INDEX_NAME: worker_index}


#: Exit status of a worker whose task raised KeyboardInterrupt (the shells' 128 + SIGINT).
EXIT_INTERRUPTED = 130


class Departure(NamedTuple):
    """The worker ends because user code raised SystemExit or KeyboardInterrupt: with ``status``, after printing
    ``note``. As in executorlib 1.x, where workers catch only Exception, the executor sees a dead worker; the
    exception never travels back to be re-raised in the caller's process, where it would end the user's program."""

    status: int
    note: str


def departure(exc: SystemExit | KeyboardInterrupt, what: str) -> Departure:
    """How the worker leaves when ``what`` (e.g. "the function f", "init_function") raised ``exc`` (pure).

    The status is the one Python itself would exit with: ``sys.exit()`` and ``sys.exit(None)`` give 0, an int code
    its low byte, any other code (a message) 1; KeyboardInterrupt gives EXIT_INTERRUPTED.
    """
    if isinstance(exc, KeyboardInterrupt):
        return Departure(EXIT_INTERRUPTED, f"{what} raised KeyboardInterrupt")
    code = exc.code
    if code is None:
        return Departure(0, f"{what} called sys.exit()")
    if isinstance(code, int):  # bool included, as in Python
        return Departure(int(code) & 0xFF, f"{what} called sys.exit({code!r})")
    return Departure(1, f"{what} called sys.exit({code!r})")


class _Leave(BaseException):
    """Carries a Departure from user code up to ``serve`` (a BaseException, so no handler of ours catches it)."""

    def __init__(self, departing: Departure) -> None:
        super().__init__(departing.note)
        self.departure = departing


class ExecutorGuard:
    """Watches the connection to the executor from a thread of its own, since the main thread may be deep in a
    user's function for hours. Not connected within ``connect_timeout`` or disconnected later: end the worker."""

    def __init__(self, sock: zmq.Socket[Any], connect_timeout: float) -> None:
        self._monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._connect_timeout_ms = int(connect_timeout * 1000)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._watch, name="xl-comm-guard", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        poller = zmq.Poller()
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._stop_r, zmq.POLLIN)
        connected = False
        try:
            while True:
                ready = dict(poller.poll(None if connected else self._connect_timeout_ms))
                if self._stop_r in ready:
                    return
                if not ready:
                    _orphaned("the executor did not accept the connection in time")
                event = _monitor_event(self._monitor.recv_multipart())
                if event == zmq.EVENT_CONNECTED:
                    connected = True
                elif event == zmq.EVENT_DISCONNECTED:
                    _orphaned("the executor closed the connection")
        finally:
            self._monitor.close(linger=0)

    def stop(self) -> None:
        os.write(self._stop_w, b"\0")
        self._thread.join()
        os.close(self._stop_r)
        os.close(self._stop_w)


def _monitor_event(frames: list[bytes]) -> int:
    """The event number of a zmq monitor message (frame 0: u16 event, u32 value; parsed here because
    zmq.utils.monitor imports asyncio, which would slow every worker's start)."""
    event: int = struct.unpack("=H", frames[0][:2])[0]
    return event


def _orphaned(reason: str) -> None:
    print(f"xl_comm.worker (pid {os.getpid()}): {reason}; exiting", file=sys.stderr, flush=True)
    if os.getpgrp() == os.getpid():  # we lead our own group: take the function's child processes with us
        import signal

        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(EXIT_ORPHANED)


Reply = tuple[Kind, int, Sequence[Frame]]


class Flusher:
    """Holds the answers of a batch so they travel together, and sends them from its own thread once the
    oldest has waited FLUSH_AFTER_SECONDS: the main thread may be inside a slow task by then. It waits on a
    condition with the deadline as timeout; nothing polls."""

    def __init__(self, send: Callable[[Sequence[Reply]], None]) -> None:
        self._send = send
        self._held: list[Reply] = []
        self._since = 0.0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._watch, name="xl-comm-flusher", daemon=True)
        self._thread.start()

    def hold(self, reply: Reply) -> None:
        with self._changed:
            if not self._held:
                self._since = time.monotonic()
                self._changed.notify()
            self._held.append(reply)

    def flush(self) -> None:
        with self._changed:
            held, self._held = self._held, []
            if held:  # sent under the condition, so the flusher thread cannot reorder answers
                self._send(held)

    def _watch(self) -> None:
        with self._changed:
            while True:
                if not self._held:
                    self._changed.wait()
                    continue
                remaining = self._since + FLUSH_AFTER_SECONDS - time.monotonic()
                if remaining > 0:
                    self._changed.wait(remaining)
                    continue
                held, self._held = self._held, []
                self._send(held)


class WorkerLoop:
    """Receives, runs and answers messages over one DEALER socket."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        key: bytes,
        worker_id: int,
        worker_index: int,
        *,
        origin: str | None = None,
        out: zmq.Socket[Any] | None = None,
        one_shot: bool = False,
        mailbox: Mailbox | None = None,
    ) -> None:
        """``mailbox``: where large buffers travel through shared memory (see xl_comm.shared), or None."""
        self._sock = sock
        self._mailbox = mailbox
        self._out = out if out is not None else sock  # where answers go (MPI ranks answer rank 0 elsewhere)
        self._key = key
        self._worker_id = worker_id
        self._sent = 0
        self._received = 0
        self._memory: dict[str, Any] = presets(worker_index, one_shot)
        self._preset_names = tuple(self._memory)
        self._init_error: RemoteError | None = None
        self._origin = origin or f"worker {worker_id} (pid {os.getpid()} on {os.uname().nodename})"
        self._send_lock = threading.Lock()
        self._flusher = Flusher(self._send_all)

    @property
    def origin(self) -> str:
        """How this worker is named in tracebacks and notes, e.g. "worker 3 (pid 123 on node7)"."""
        return self._origin

    def send(self, message: Message) -> None:
        self._send_all([(message.kind, 0, pack_body(message))])

    def serve(self, one_shot: bool) -> Departure | None:
        """Answer messages until told to stop (None), or until user code raised SystemExit or KeyboardInterrupt:
        then the answers already made are sent and the Departure is returned, for the caller to end the process."""
        try:
            self._serve(one_shot)
        except _Leave as leave:
            self._flusher.flush()  # a batch's earlier answers are results: they leave before the worker does
            return leave.departure
        return None

    def _serve(self, one_shot: bool) -> None:
        while True:
            try:
                header, frames, lost = open_received(self._key, recv_frames(self._sock), self._mailbox)
            except ProtocolError as problem:
                print(f"xl_comm.worker: dropped a message: {problem}", file=sys.stderr, flush=True)
                continue
            if header.kind not in TO_WORKER or header.worker_id != self._worker_id or header.seq <= self._received:
                print("xl_comm.worker: dropped an out-of-place message", file=sys.stderr, flush=True)
                continue
            self._received = header.seq
            if lost is not None and header.kind == Kind.BATCH:  # its tasks are named inside the lost body
                print(f"xl_comm.worker: lost a batch of tasks: {lost}", file=sys.stderr, flush=True)
                continue
            if header.kind == Kind.BATCH:
                self._run_batch(header, frames)
                continue
            try:
                message = open_body(header, frames, lost)
            except BodyError as problem:
                if header.kind == Kind.TASK:
                    self._send_all([self._failure(problem, header.task_id)])
                    if one_shot:
                        return
                continue
            if isinstance(message, Task):  # the common case first
                kind, task_id, body = self._run(message, header.task_id)
                self._send_one(kind, task_id, body)
                # An idle worker holds neither the arguments nor the result (large ones are mappings of memfds).
                del frames, message, body
                self._answered(kind)
                if one_shot:
                    return
            elif isinstance(message, Init):
                self._init(message)
            elif isinstance(message, Shutdown):
                return

    def _answered(self, kind: Kind) -> None:
        """Called after each single task's answer has been sent (a hook for MPI ranks)."""

    def _run_batch(self, header: Header, frames: Sequence[Any]) -> None:
        """Run a batch's tasks in order and answer them together; answers that wait longer than
        FLUSH_AFTER_SECONDS (a member turned out slow) are sent meanwhile by the flusher thread."""
        try:
            members = open_batch(header, frames)
        except BodyError as problem:
            print(f"xl_comm.worker: dropped a malformed batch: {problem}", file=sys.stderr, flush=True)
            return
        for member, task in members:
            if isinstance(task, BodyError):
                self._flusher.hold(self._failure(task, member.task_id))
            elif isinstance(task, Task):
                self._flusher.hold(self._run(task, member.task_id))
        self._flusher.flush()

    def _send_all(self, replies: Sequence[tuple[Kind, int, Sequence[Frame]]]) -> None:
        """Send replies as one message (any thread: the socket and the sequence number are under a lock)."""
        if len(replies) == 1:
            self._send_one(*replies[0])
        else:
            self._send_one(Kind.REPLIES, 0, pack_batch(replies))

    def _send_one(self, kind: Kind, task_id: int, body: Sequence[Frame]) -> None:
        with self._send_lock:
            self._sent += 1
            header = Header(kind, self._worker_id, self._sent, task_id)
            send_frames(self._out, seal(self._key, header, body, self._mailbox))

    def _failure(self, problem: BodyError, task_id: int) -> tuple[Kind, int, Sequence[Frame]]:
        from xl_serial import capture

        return Kind.FAILURE, task_id, pack_body(Failure(capture(problem.reportable(), origin=self._origin)))

    def _init(self, message: Init) -> None:
        try:
            preset = message.fn()
            if not isinstance(preset, Mapping):
                raise TypeError(f"init_function must return a dict of keyword arguments, got {type(preset).__name__}")
            self._memory.update(preset)
            self._preset_names = tuple(self._memory)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise _Leave(departure(exc, "init_function")) from None
        except BaseException as exc:
            from xl_serial import capture

            self._init_error = capture(exc, origin=f"init_function on {self._origin}")

    def _run(self, task: Task, task_id: int) -> tuple[Kind, int, Sequence[Frame]]:
        """Run one task; its reply as (kind, task id, pickled body)."""
        outcome = self._outcome(task)
        if isinstance(outcome, Failure):
            return Kind.FAILURE, task_id, pack_body(outcome)
        try:
            return Kind.RESULT, task_id, pack_body(outcome)
        except Exception as exc:  # an unpicklable result fails this task only
            from xl_serial import capture

            return (
                Kind.FAILURE,
                task_id,
                pack_body(Failure(capture(exc, origin=f"{self._origin}, pickling the result"))),
            )

    def _outcome(self, task: Task) -> Result | Failure:
        """Call the task's function here: its value, or the captured exception."""
        if self._init_error is not None:
            return Failure(self._init_error)
        try:
            fn, args, kwargs = task.fn, task.args, task.kwargs
            presets = _preset_positions(fn, self._preset_names)
            if presets:  # e.g. executorlib_worker_id, or init_function's values
                kwargs = with_presets(presets, args, kwargs, self._memory)
            started = time.perf_counter()
            value = fn(*args, **kwargs)
            return Result(value, time.perf_counter() - started)  # the function's time only (the cache's runtime)
        except (SystemExit, KeyboardInterrupt) as exc:  # never re-raised in the caller: the worker ends instead
            from xl_serial import function_name

            raise _Leave(departure(exc, f"the function {function_name(task.fn)}")) from None
        except BaseException as exc:  # every other failure of user code goes back to the caller
            from xl_serial import capture

            if task.error_log_file:
                _append_error_log(task, exc)
            return Failure(capture(exc, origin=self._origin))


def with_presets(
    presets: Sequence[tuple[str, int | None]], args: Sequence[Any], kwargs: Mapping[str, Any], memory: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``kwargs`` plus the worker's preset values for the parameters in ``presets`` (see _preset_positions) that the
    caller did not supply."""
    merged = dict(kwargs)
    for name, position in presets:
        if name not in merged and (position is None or position >= len(args)):
            merged[name] = memory[name]
    return merged


_PRESETS_CACHE: dict[tuple[int, tuple[str, ...]], tuple[Any, tuple[tuple[str, int | None], ...]]] = {}


def _preset_positions(fn: Callable[..., Any], names: tuple[str, ...]) -> tuple[tuple[str, int | None], ...]:
    """The parameters of ``fn`` that a preset may fill: (name, position or None for keyword-only). Cached per
    function, since inspecting a signature costs more than a small task."""
    key = (id(fn), names)
    cached = _PRESETS_CACHE.get(key)
    if cached is not None and cached[0] is fn:
        return cached[1]
    code = getattr(fn, "__code__", None)
    positions: tuple[tuple[str, int | None], ...] = ()
    if code is None or set(names).intersection(code.co_varnames):
        import inspect

        try:
            parameters = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # builtins without a signature take no presets
            parameters = []
        found = []
        for index, parameter in enumerate(parameters):
            if parameter.name not in names or parameter.kind in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
                parameter.POSITIONAL_ONLY,
            ):
                continue
            found.append((parameter.name, index if parameter.kind == parameter.POSITIONAL_OR_KEYWORD else None))
        positions = tuple(found)
    if len(_PRESETS_CACHE) > 1024:
        _PRESETS_CACHE.clear()
    _PRESETS_CACHE[key] = (fn, positions)  # holding fn keeps its id from being reused while cached
    return positions


def _append_error_log(task: Task, exc: BaseException) -> None:
    from xl_serial import error_report  # the same entry as the file-mode worker writes (one owner: xl-serial)

    assert task.error_log_file is not None
    with open(task.error_log_file, "a", encoding="utf-8") as log_file:
        log_file.write(error_report(task.fn, task.args, task.kwargs, exc))


def connect(
    context: zmq.Context[Any], address: str, connect_timeout: float, identity: bytes | None = None
) -> tuple[zmq.Socket[Any], ExecutorGuard]:
    """A DEALER connected to ``address``, watched by a guard that ends this process if the peer goes away."""
    sock = context.socket(zmq.DEALER)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.setsockopt(zmq.LINGER, 5_000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 5_000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15_000)
    guard = ExecutorGuard(sock, connect_timeout)
    sock.connect(address)
    return sock, guard


def close(context: zmq.Context[Any], sock: zmq.Socket[Any], guard: ExecutorGuard) -> None:
    sock.disable_monitor()
    guard.stop()
    sock.close()  # lingers until the last reply has left
    context.term()


def leave(origin: str, departing: Departure) -> None:
    """Say on stderr why the worker ends, then end it with the departure's status (atexit handlers run)."""
    print(f"{origin}: {departing.note}; the worker exits with status {departing.status}", file=sys.stderr, flush=True)
    fast_exit(departing.status)


def fast_exit(status: int = 0) -> None:
    """Skip the interpreter's teardown of every loaded module (tens of ms per task) but keep the promises a
    user's code may rely on: atexit handlers and flushed output."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

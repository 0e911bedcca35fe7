"""A fork server: a warm Python that imported a module's dependencies once and forks a fresh child per worker.

Starting ``python -m xl_comm.worker`` costs an interpreter start plus its imports (tens of milliseconds); a child
forked from a parent that has the imports already is running in about a millisecond. The parent (the *server*,
``python -c`` running ``_SERVER_COMMAND``) never runs user code: each child is a process that ran nothing but the
preloaded imports, with its own session (process group), working directory, environment and ``sys.path``,
running the module as ``python -m module args`` would.

The executor talks to the server over a private unix socket pair (typed messages, pickled; nobody else holds the
socket). The server reaps its children and reports each exit status, after killing what a child left behind in
its process group; the executor's :class:`ForkedSpawner` watches the child through a pidfd (or the report). Each
child carries its own lifeline (see :mod:`xl_spawn.process`), handed over with the request, so the kernel kills
the child's group if the executor dies; the server is itself started with one, and stops its children when it is
closed or terminated.

What a forked child shares with its siblings, unlike a fresh interpreter: the modules the server preloaded (and
their state at import) and the string hash seed; ``/proc/<pid>/environ`` shows the server's environment, not the
child's (which only ``os.environ`` holds). ``random`` is reseeded in every child by the stdlib.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import itertools
import logging
import os
import pickle
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xl_spawn.portable import forced
from xl_spawn.process import LIFELINE_VARIABLE, Lifeline, SubprocessSpawner

__all__ = ["ForkServer", "ForkedSpawner"]

logger = logging.getLogger(__name__)

#: Largest message on the socket pair (an environment is a few kilobytes).
_MAX_MESSAGE = 1 << 20

#: What the server runs (``python -c``), with ``--fd N MODULE...`` as its arguments.
_SERVER_COMMAND = "import sys; from xl_spawn.forkserver import main; sys.exit(main())"

#: How long close() lets the server stop its children before it is terminated (it does that too, on SIGTERM).
_CLOSE_TIMEOUT = 10.0

#: How long bootup waits for the server to report the child's pid.
_FORK_TIMEOUT = 30.0


# -- messages ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fork:
    """Start ``module`` with ``args`` in a new child (the lifeline's read end travels as the message's fd; with
    ``watchdog`` the child names it in ``XL_LIFELINE`` for its own watchdog instead of arming it for the kernel)."""

    request: int
    module: str
    args: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    watchdog: bool = False


@dataclass(frozen=True)
class Kill:
    """Send ``signum`` to the process group of child ``pid``, if it has not been reaped."""

    pid: int
    signum: int


@dataclass(frozen=True)
class Forked:
    request: int
    pid: int


@dataclass(frozen=True)
class ForkFailed:
    request: int
    error: str


@dataclass(frozen=True)
class Exited:
    pid: int
    returncode: int


def _send(sock: socket.socket, message: object, fds: Sequence[int] = ()) -> None:
    socket.send_fds(sock, [pickle.dumps(message)], list(fds))


def _receive(sock: socket.socket) -> tuple[object, list[int]] | None:
    """One message and the fds that came with it; None at end of file."""
    data, fds, _flags, _address = socket.recv_fds(sock, _MAX_MESSAGE, 1)
    if not data:
        return None
    return pickle.loads(data), fds  # only the two ends of a private socket pair write here


# -- the executor's side -----------------------------------------------------------------------------------------


class ForkServer:
    """Starts the server on first use, forks workers through it, stops it on ``close``.

    ``preload``: modules the server imports once (e.g. ``["xl_comm.worker"]``); a module a child runs needs not be
    among them. ``env``: laid over ``os.environ`` for the server itself (each child gets its own environment).
    Thread-safe.
    """

    def __init__(self, preload: Sequence[str] = (), *, env: Mapping[str, str] | None = None) -> None:
        bad = [name for name in preload if not all(part.isidentifier() for part in str(name).split("."))]
        if bad or isinstance(preload, str):
            raise ValueError(f"preload must be dotted module names such as ['xl_comm.worker'], got {preload!r}")
        self._preload = tuple(preload)
        self._env = dict(env or {})
        self._lock = threading.Lock()
        self._server: SubprocessSpawner | None = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._requests = itertools.count(1)
        self._waiting: dict[int, _Reply] = {}
        self._children: dict[int, ForkedSpawner] = {}
        self._closed = False

    def spawner(
        self, *, cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
    ) -> ForkedSpawner:
        """A spawner for one child (``env`` laid over ``os.environ``; ``cwd`` created private if missing)."""
        return ForkedSpawner(self, cwd=cwd, env=env)

    def start(self) -> None:
        """Start the server now (it imports its modules in the background) instead of at the first fork."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this ForkServer was closed; make a new one")
            self._ensure_started()

    @property
    def pid(self) -> int | None:
        """The server's pid, None before first use or after ``close``."""
        server = self._server
        return server.pid if server is not None and server.returncode is None else None

    def close(self) -> None:
        """Stop the server (it kills and reaps children still running) and wait for it; idempotent."""
        with self._lock:
            self._closed = True
            server, sock = self._server, self._sock
            self._server = self._sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the server sees end of file; our reader thread too
        if server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=_CLOSE_TIMEOUT)  # it stops its children first
            server.shutdown(wait=True)
        if sock is not None:
            sock.close()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by ForkedSpawner ---------------------------------------------------------------------------------

    def _fork(self, child: ForkedSpawner, module: str, args: Sequence[str], lifeline: Lifeline | None) -> int:
        reply = _Reply(child)
        with self._lock:
            if self._closed:
                raise RuntimeError("this ForkServer was closed; make a new one")
            sock = self._ensure_started()
            request = next(self._requests)
            self._waiting[request] = reply
        env = dict(os.environ)
        env.update(child._env)
        cwd = None if child._cwd is None else os.fspath(child._cwd)
        watchdog = lifeline is not None and not lifeline.by_kernel
        message = Fork(request, module, tuple(args), env, cwd, watchdog)
        try:
            with self._send_lock:
                _send(sock, message, [lifeline.read_fd] if lifeline is not None else [])
        except OSError as problem:
            self._waiting.pop(request, None)
            raise RuntimeError(f"the fork server did not take the request: {problem}") from problem
        if not reply.event.wait(_FORK_TIMEOUT):
            self._waiting.pop(request, None)
            raise RuntimeError(f"the fork server did not answer within {_FORK_TIMEOUT:g} s")
        if reply.error is not None:
            raise RuntimeError(f"the fork server could not start python -m {module}: {reply.error}")
        return reply.pid

    def _kill(self, pid: int, signum: int) -> None:
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError), self._send_lock:
            _send(sock, Kill(pid, signum))

    def _ensure_started(self) -> socket.socket:
        """Under the lock: the socket to a running server, starting one if needed."""
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = SubprocessSpawner(env=self._env, pass_fds=(theirs.fileno(),))
        try:
            # -c, not -m: running this module as __main__ would make its message classes __main__'s
            server.bootup([sys.executable, "-c", _SERVER_COMMAND, "--fd", str(theirs.fileno()), *self._preload])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._server, self._sock = server, ours
        threading.Thread(target=self._read, args=(ours,), name="xl-spawn-forkserver", daemon=True).start()
        return ours

    def _read(self, sock: socket.socket) -> None:
        """The reader thread: hand each reply to its waiter and each exit to its spawner."""
        while True:
            try:
                received = _receive(sock)
            except OSError:
                received = None
            if received is None:
                break
            message, fds = received
            for fd in fds:
                os.close(fd)
            if isinstance(message, Forked | ForkFailed):
                reply = self._waiting.pop(message.request, None)
                if reply is None:
                    continue
                if isinstance(message, Forked):
                    reply.pid = message.pid
                    reply.child._watch(message.pid)  # before the next message, which may be its exit
                    self._children[message.pid] = reply.child  # before its exit can be reported
                else:
                    reply.error = message.error
                reply.event.set()
            elif isinstance(message, Exited):
                child = self._children.pop(message.pid, None)
                if child is not None:
                    child._exited(message.returncode)
        # The server is gone, and with it the reaping: its children were killed by it (close), or, if it was
        # killed, are orphans that end with their task (one-shot workers) or with us (their lifelines). Either
        # way their exit can no longer be reported: they count as killed.
        with self._lock:
            if self._sock is sock:
                self._sock = None
                self._server = None
        for reply in list(self._waiting.values()):
            reply.error = "the fork server exited"
            reply.event.set()
        for child in list(self._children.values()):
            child._exited(-signal.SIGKILL)
        self._children.clear()


class _Reply:
    """The server's answer to one Fork request, for the thread waiting in ``bootup``."""

    def __init__(self, child: ForkedSpawner) -> None:
        self.child = child
        self.event = threading.Event()
        self.pid = 0
        self.error: str | None = None


class ForkedSpawner:
    """One child of a :class:`ForkServer`, with the :class:`~xl_spawn.Spawner` surface. ``bootup`` takes
    ``[python, "-m", module, *args]`` (the running interpreter). The sentinel, a pidfd (or, where pidfds are
    refused, a pipe written when the server reports the exit), turns readable at exit; the status follows from the
    server. ``shutdown`` sends SIGTERM to the child's group, SIGKILL after ``terminate_timeout``."""

    def __init__(
        self,
        server: ForkServer,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        terminate_timeout: float = 2.0,
    ) -> None:
        self._server = server
        self._cwd = cwd
        self._env = dict(env or {})
        self._terminate_timeout = terminate_timeout
        self._argv: list[str] = []
        self._pid: int | None = None
        self._returncode: int | None = None
        self._done = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        #: a pidfd of the child: readable the moment it exits, before the server's report arrives
        self._pidfd = -1
        self._fd_lock = threading.Lock()
        self._lifeline = Lifeline()
        self._shutdown_called = False

    def bootup(self, argv: Sequence[str]) -> None:
        if self._pid is not None or self._shutdown_called:
            raise RuntimeError("bootup() may be called once, before shutdown(); use a new spawner")
        words = list(argv)
        if len(words) < 3 or words[0] != sys.executable or words[1] != "-m":
            raise ValueError(
                f"a forked child runs [sys.executable, '-m', module, *args], got {argv!r}; start other commands "
                "with SubprocessSpawner"
            )
        self._argv = words
        try:
            self._pid = self._server._fork(self, words[2], words[3:], self._lifeline)
        except BaseException:
            self._close_fds()
            raise
        logger.debug("forked %s", self.describe())

    def _watch(self, pid: int) -> None:
        """Open a pidfd of the child (a non-child's pidfd turns readable at its exit too). Not reaped yet by the
        server, which reports the exit only after this message was read, so the pid is still the child's."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None and not forced("waiter"):
            with contextlib.suppress(OSError):  # ENOSYS, EPERM (seccomp), ESRCH: the pipe reports the exit
                self._pidfd = pidfd_open(pid)

    def _exited(self, returncode: int) -> None:
        """Called by the server's reader thread: record the status, then make the sentinel readable."""
        self._returncode = returncode
        self._done.set()
        with self._fd_lock:
            if self._write_fd >= 0:
                os.write(self._write_fd, b"x")

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise RuntimeError("pid needs a started process; call bootup(argv) first")
        return self._pid

    @property
    def sentinel(self) -> int:
        """An fd that becomes readable when the process has exited (and its status is known); closed by
        ``shutdown``."""
        if self._pid is None:
            raise RuntimeError("sentinel needs a started process; call bootup(argv) first")
        if self._read_fd < 0:
            raise RuntimeError(f"the sentinel of {self.describe()} was closed by shutdown()")
        return self._pidfd if self._pidfd >= 0 else self._read_fd

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def poll(self) -> int | None:
        return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self._argv, timeout if timeout is not None else 0.0)
        assert self._returncode is not None
        return self._returncode

    def shutdown(self, wait: bool = True) -> int | None:
        """Stop the child's group (SIGTERM, SIGKILL after ``terminate_timeout``), close the sentinel; idempotent.
        With ``wait=False`` the escalation runs in a daemon thread."""
        self._shutdown_called = True
        if self._pid is None:
            self._close_fds()
            return None
        if wait:
            self._stop()
        else:
            threading.Thread(target=self._stop, name=f"xl-spawn-shutdown-{self._pid}", daemon=True).start()
        return self._returncode

    def _stop(self) -> None:
        pid = self.pid
        if not self._done.is_set():
            self._server._kill(pid, signal.SIGTERM)
            if not self._done.wait(self._terminate_timeout):
                self._server._kill(pid, signal.SIGKILL)
                self._done.wait()
        self._close_fds()

    def _close_fds(self) -> None:
        if self._lifeline is not None:
            self._lifeline.close()
        with self._fd_lock:
            for fd in (self._read_fd, self._write_fd, self._pidfd):
                if fd >= 0:
                    os.close(fd)
            self._read_fd = self._write_fd = self._pidfd = -1

    def stderr_tail(self, timeout: float = 2.0) -> str:
        return ""  # the child writes to our stderr directly

    def describe(self) -> str:
        if self._pid is None:
            return "a process not started yet"
        return f"pid {self._pid} ({shlex.join(['python', *self._argv[1:]])[:110]}, forked)"

    def __repr__(self) -> str:
        return f"<ForkedSpawner {self.describe()} returncode={self._returncode}>"


# -- the server --------------------------------------------------------------------------------------------------


#: The signals the server handles in Python, which a forked child must not handle with the server's handlers.
_HANDLED_SIGNALS = {signal.SIGTERM, signal.SIGCHLD}


class _Server:
    """The loop of ``python -m xl_spawn.forkserver``: fork on request, reap on SIGCHLD, report exits."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._pid = os.getpid()
        self._children: set[int] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so the wake-up fd hears of it
        signal.signal(signal.SIGTERM, self._terminated)
        signal.set_wakeup_fd(self._wake_w)
        # The base of every child's sys.path: ours without our own script directory and PYTHONPATH entries.
        ours = {os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
        self._base_path = [p for p in sys.path[1:] if os.path.abspath(p) not in ours]

    def serve(self) -> None:
        try:
            self._serve()
        finally:
            self._stop_all()

    def _serve(self) -> None:
        lifeline = _inherited_lifeline()
        watched = [self._sock.fileno(), self._wake_r, *([lifeline] if lifeline is not None else [])]
        while True:
            readable, _, _ = select.select(watched, [], [])
            if lifeline is not None and lifeline in readable and not os.read(lifeline, 1):
                return  # our lifeline without F_SETSIG: the executor died (a fork helper may hold our socket)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 512):
                        pass
                self._reap()
            if self._sock.fileno() in readable:
                try:
                    received = _receive(self._sock)
                except OSError:
                    received = None
                if received is None:
                    return
                self._handle(*received)

    def _handle(self, message: object, fds: list[int]) -> None:
        if isinstance(message, Fork):
            lifeline = fds[0] if fds else -1
            # Until the child has dropped our handlers, SIGTERM and SIGCHLD wait: a SIGTERM for the new child (a
            # spare stopped at once: Kill before its setsid) would otherwise run _terminated in the child, which
            # SIGKILLs every other child of this server, tasks running included.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
            try:
                pid = os.fork()
            except OSError as problem:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                self._report(ForkFailed(message.request, str(problem)))
            else:
                if pid == 0:
                    self._child(message, lifeline, mask)  # never returns
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                self._children.add(pid)
                self._report(Forked(message.request, pid))
            finally:
                for fd in fds:
                    os.close(fd)
        elif isinstance(message, Kill) and message.pid in self._children:
            try:
                os.killpg(message.pid, message.signum)
            except ProcessLookupError:  # not a group leader yet (before its setsid): the process itself
                with contextlib.suppress(ProcessLookupError):
                    os.kill(message.pid, message.signum)

    def _report(self, message: object) -> None:
        with contextlib.suppress(OSError):
            _send(self._sock, message)

    def _reap(self) -> None:
        for pid in list(self._children):
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is None or info.si_pid == 0:
                continue
            # Still a zombie, so its group id cannot be reused: kill what it left behind, then reap it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            self._children.discard(pid)
            self._report(Exited(pid, os.waitstatus_to_exitcode(status)))

    def _terminated(self, signum: int, _frame: object) -> None:
        """SIGTERM (close() gave up waiting): kill the children's groups and leave at once, whatever the main
        thread was doing. Only the server itself: a child that still held this handler just ends."""
        if os.getpid() != self._pid:
            os._exit(128 + signum)
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        os._exit(128 + signum)

    def _stop_all(self) -> None:
        """The executor closed the socket (or died): no child outlives the server."""
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self._children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _child(self, message: Fork, lifeline: int, mask: set[int | signal.Signals]) -> None:
        """In the forked child: become ``python -m module args`` in a session of its own; never returns. Starts
        with SIGTERM and SIGCHLD blocked (see _handle); a SIGTERM that came meanwhile ends it once unblocked."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._sock.close()
            os.setsid()
            _name_process(message.module)
            if lifeline >= 0 and not message.watchdog:  # SIGKILL to our group when the executor's end closes
                fcntl.fcntl(lifeline, fcntl.F_SETOWN, -os.getpid())
                fcntl.fcntl(lifeline, fcntl.F_SETSIG, signal.SIGKILL)
                fcntl.fcntl(lifeline, fcntl.F_SETFL, fcntl.fcntl(lifeline, fcntl.F_GETFL) | os.O_ASYNC)
            if message.cwd is not None:
                os.makedirs(message.cwd, mode=0o700, exist_ok=True)
                os.chdir(message.cwd)
            os.environ.clear()
            os.environ.update(message.env)
            os.environ.pop(LIFELINE_VARIABLE, None)
            if lifeline >= 0 and message.watchdog:  # no F_SETSIG: the worker's watchdog reads the pipe
                status = os.fstat(lifeline)
                os.environ[LIFELINE_VARIABLE] = f"{lifeline}:{status.st_dev}:{status.st_ino}"
            entries = [os.path.abspath(p) for p in message.env.get("PYTHONPATH", "").split(os.pathsep) if p]
            sys.path[:] = [os.getcwd(), *entries, *self._base_path]
            import runpy
            import warnings

            # runpy warns that the module was imported before it runs as __main__: here that is the point.
            warnings.filterwarnings("ignore", "'.*' found in sys.modules after import", RuntimeWarning)
            sys.argv = [message.module, *message.args]
            runpy.run_module(message.module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.flush()
            os._exit(code)


def _inherited_lifeline() -> int | None:
    """The lifeline pipe named in ``XL_LIFELINE`` (``fd:device:inode``) if we inherited that very pipe: set where
    the kernel cannot kill our group when the executor dies, so the server watches the pipe itself."""
    try:
        fd, device, inode = (int(part) for part in os.environ.get(LIFELINE_VARIABLE, "").split(":"))
        status = os.fstat(fd)
    except (ValueError, OSError):
        return None
    return fd if (status.st_dev, status.st_ino) == (device, inode) else None


def _name_process(module: str) -> None:
    """Show the child as ``module`` (its last 15 characters) in ps and top: its command line is the server's."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w", encoding="ascii", errors="replace") as comm:
        comm.write(module[-15:])  # the main thread's name is the process's


def _exit_code(code: object) -> int:
    """What ``sys.exit(code)`` ends a Python with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if len(words) < 2 or words[0] != "--fd" or not words[1].isdigit():
        print("usage: python -c 'from xl_spawn.forkserver import main; main()' --fd FD [MODULE ...]")
        return 2
    sock = socket.socket(fileno=int(words[1]))

    for module in words[2:]:
        importlib.import_module(module)
    _Server(sock).serve()
    return 0

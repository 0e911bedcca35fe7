"""Spawners: start one worker process in its own process group, watch it through a sentinel fd, stop it.

The sentinel is an fd that becomes readable once the process has exited, so a manager thread can wait on it
next to its sockets (``select``, ``selectors``, ``zmq.Poller``) instead of polling ``poll()``. It is a pidfd
(``os.pidfd_open``, Linux >= 5.3) when the kernel allows one, otherwise the read end of a pipe written by a waiter
thread (see :mod:`xl_spawn.exits`). Both kinds report exit *without* reaping the process; reaping stays with the
``Popen`` object.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import logging
import math
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Protocol

from xl_spawn.exits import exit_fd
from xl_spawn.portable import forced

__all__ = ["LIFELINE_VARIABLE", "Lifeline", "Spawner", "SubprocessSpawner"]

#: names the lifeline pipe for the child's watchdog where the kernel cannot watch it (read by xl_comm.worker)
LIFELINE_VARIABLE = "XL_LIFELINE"

logger = logging.getLogger(__name__)

_DESCRIBE_MAX_CHARS = 120


class Spawner(Protocol):
    """One worker process: start it, watch it, stop it.

    ``sentinel`` is an fd that becomes readable when the process has exited; it is valid from ``bootup`` until
    ``shutdown``. ``wait(timeout)`` raises ``subprocess.TimeoutExpired`` when the timeout passes. A static
    protocol only (no ``runtime_checkable``): ``pid`` and ``sentinel`` raise before ``bootup``, which would
    make an ``isinstance`` check raise on Python < 3.12.
    """

    def bootup(self, argv: Sequence[str]) -> None: ...

    @property
    def pid(self) -> int: ...

    @property
    def sentinel(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def shutdown(self, wait: bool = True) -> int | None: ...

    @property
    def returncode(self) -> int | None: ...

    def describe(self) -> str: ...


class Lifeline:
    """Kills the child's process group when this process dies, however it dies (kill -9, OOM), with no help
    from the child: a watchdog thread in a Python child cannot run while the user's code holds the GIL (a
    spinning MPI call does). The child inherits the read end of a pipe whose write end only we hold; the
    kernel sends SIGKILL to the child's group (F_SETOWN, F_SETSIG, O_ASYNC) when that pipe reaches end of file,
    which happens when our write end closes with us. That needs Linux's F_SETSIG; elsewhere (or with
    ``XL_PORTABLE=watchdog``) the child is told the pipe in ``XL_LIFELINE`` (``fd:device:inode``) and a worker
    that reads it (``xl_comm.worker``) runs a watchdog thread, blocked in a read of the pipe, that kills its group
    at end of file: the same guarantee while the GIL is free.

    A child forked from this process (a ``multiprocessing`` fork helper, a fork Pool) would inherit the write
    end and keep the pipe open after we die, so every live lifeline is closed in forked children (see
    ``_forget_in_child``)."""

    def __init__(self) -> None:
        #: the kernel kills the group (F_SETSIG); else the child's watchdog must
        self.by_kernel = self.kernel_supported() and not forced("watchdog")
        with _live_lock:
            self.read_fd, self._write_fd = os.pipe()
            _live.add(self)

    @staticmethod
    def kernel_supported() -> bool:
        return hasattr(fcntl, "F_SETSIG") and hasattr(os, "O_ASYNC")

    def environment(self) -> dict[str, str]:
        """What the child needs to watch the pipe itself (nothing when the kernel does): the fd with its device
        and inode, so a process that did not inherit this very pipe at that number ignores it."""
        if self.by_kernel:
            return {}
        status = os.fstat(self.read_fd)
        return {LIFELINE_VARIABLE: f"{self.read_fd}:{status.st_dev}:{status.st_ino}"}

    def arm(self, group: int) -> None:
        if not self.by_kernel:
            return
        fcntl.fcntl(self.read_fd, fcntl.F_SETOWN, -group)
        fcntl.fcntl(self.read_fd, fcntl.F_SETSIG, signal.SIGKILL)
        fcntl.fcntl(self.read_fd, fcntl.F_SETFL, fcntl.fcntl(self.read_fd, fcntl.F_GETFL) | os.O_ASYNC)

    def close(self) -> None:
        """Disarm, then close both ends (idempotent)."""
        with _live_lock:
            if self.read_fd < 0:
                return
            if self.by_kernel:
                fcntl.fcntl(self.read_fd, fcntl.F_SETFL, fcntl.fcntl(self.read_fd, fcntl.F_GETFL) & ~os.O_ASYNC)
            os.close(self.read_fd)
            os.close(self._write_fd)
            self.read_fd = self._write_fd = -1
            _live.discard(self)

    def forget(self) -> None:
        """In a forked child: close our copies of both ends without disarming (the O_ASYNC flag belongs to the
        open file, shared with the parent) and make ``close`` a no-op, so the fd numbers may be reused."""
        for fd in (self.read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.read_fd = self._write_fd = -1


# Every lifeline not closed yet. The lock is held across fork(), so a child never sees the set half-changed.
_live: set[Lifeline] = set()
_live_lock = threading.Lock()


def _forget_in_child() -> None:
    for lifeline in _live:
        lifeline.forget()
    _live.clear()
    _live_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_live_lock.acquire, after_in_parent=_live_lock.release, after_in_child=_forget_in_child)


class SubprocessSpawner:
    """Run ``argv`` as a local subprocess that leads a new session (and so its own process group).

    ``env`` is laid over a copy of ``os.environ``; ``cwd`` is created (private to the user) if missing.
    ``shutdown`` sends SIGTERM to the whole group, SIGKILL after ``terminate_timeout`` seconds, and kills what
    the process left behind in its group even when it had exited on its own. With ``lifeline`` (the default) the
    group is also killed if this process dies first, e.g. by SIGKILL: by the kernel on Linux, elsewhere by the
    child's watchdog where the child runs one (``xl_comm.worker`` does). ``pass_fds``: more fds
    the child inherits (e.g. one end of a socket pair).

    >>> with SubprocessSpawner() as spawner:
    ...     spawner.bootup(["true"])
    ...     spawner.wait(timeout=10)
    0
    """

    def __init__(
        self,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        terminate_timeout: float = 2.0,
        lifeline: bool = True,
        keep_stderr: int = 0,
        pass_fds: Sequence[int] = (),
    ) -> None:
        if not (isinstance(terminate_timeout, (int, float)) and math.isfinite(terminate_timeout)) or (
            terminate_timeout < 0
        ):
            raise ValueError(f"terminate_timeout must be a finite number of seconds >= 0, got {terminate_timeout!r}")
        self._cwd = cwd
        self._env = dict(env) if env is not None else {}
        self._terminate_timeout = float(terminate_timeout)
        self._argv: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._sentinel: int | None = None
        self._fd_lock = threading.Lock()  # guards self._sentinel against close-while-used
        self._stop_lock = threading.Lock()  # one TERM -> KILL escalation at a time
        self._state_lock = threading.Lock()  # guards starting the background shutdown thread
        self._stopped = False
        self._shutdown_called = False
        self._background: threading.Thread | None = None
        self._lifeline = Lifeline() if lifeline else None
        if isinstance(keep_stderr, bool) or not isinstance(keep_stderr, int) or keep_stderr < 0:
            raise ValueError(f"keep_stderr must be a number of bytes >= 0, got {keep_stderr!r}")
        self._keep_stderr = keep_stderr
        self._pass_fds = tuple(pass_fds)
        self._stderr_tail = bytearray()
        self._stderr_pump: threading.Thread | None = None

    # -- start ---------------------------------------------------------------------------------------------

    def bootup(self, argv: Sequence[str]) -> None:
        """Start ``argv``; stdout and stderr are inherited, stdin is /dev/null.

        With ``keep_stderr=N`` the child's stderr goes through a pipe instead: a daemon thread copies it to this
        process's ``sys.stderr`` as it arrives and keeps the last N bytes for ``stderr_tail`` (e.g. to name the
        SLURM state in srun's last words)."""
        if self._proc is not None:
            raise RuntimeError(f"bootup() was already called for {self.describe()}; use a new SubprocessSpawner")
        if self._shutdown_called:
            raise RuntimeError("bootup() after shutdown(); use a new SubprocessSpawner")
        if isinstance(argv, str) or not argv or not all(isinstance(arg, str) for arg in argv):
            raise ValueError(f"argv must be a non-empty sequence of strings, got {argv!r}")
        command = list(argv)
        if self._cwd is not None:
            os.makedirs(self._cwd, mode=0o700, exist_ok=True)
        env = dict(os.environ)
        env.update(self._env)
        if self._lifeline is not None:
            env.update(self._lifeline.environment())
        try:
            proc = subprocess.Popen(
                command,
                cwd=self._cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE if self._keep_stderr else None,
                # A new session makes the child lead its own process group, which it cannot leave, so killpg
                # reaches it and everything it starts without touching our own group.
                start_new_session=True,
                close_fds=True,
                pass_fds=(*self._pass_fds, *((self._lifeline.read_fd,) if self._lifeline is not None else ())),
            )
        except BaseException:
            if self._lifeline is not None:
                self._lifeline.close()
            raise
        if self._lifeline is not None:
            self._lifeline.arm(proc.pid)
        self._proc, self._argv = proc, command
        if proc.stderr is not None:
            self._stderr_pump = threading.Thread(
                target=self._pump_stderr, args=(proc.stderr,), name=f"xl-spawn-stderr-{proc.pid}", daemon=True
            )
            self._stderr_pump.start()
        try:
            self._open_sentinel(proc.pid)
        except BaseException:
            self._stopped = True
            self._signal_group(signal.SIGKILL)
            if self._lifeline is not None:
                self._lifeline.close()
            proc.wait()
            self._close_sentinel()
            raise
        logger.debug("started %s", self.describe())

    def _open_sentinel(self, pid: int) -> None:
        self._sentinel = exit_fd(pid, child=True)

    def _pump_stderr(self, stream: IO[bytes]) -> None:
        """Copy the child's stderr to ours as it comes (so the user still sees it) and keep its tail."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = stream.fileno()
        try:
            while chunk := os.read(fd, 65536):
                self._stderr_tail += chunk
                del self._stderr_tail[: -self._keep_stderr]
                text = decoder.decode(chunk)
                target = sys.stderr
                if target is not None and text:
                    with contextlib.suppress(Exception):  # a closed or odd sys.stderr must not stop the copy
                        target.write(text)
                        target.flush()
        except OSError:
            pass
        finally:
            stream.close()

    def stderr_tail(self, timeout: float = 2.0) -> str:
        """The last ``keep_stderr`` bytes the child wrote to stderr ("" without ``keep_stderr``). Once the
        process has exited this waits up to ``timeout`` seconds for the pipe to drain, so the child's last
        words are in."""
        pump = self._stderr_pump
        if pump is not None and self.returncode is not None:
            pump.join(timeout)
        return bytes(self._stderr_tail).decode("utf-8", errors="replace")

    # -- observe -------------------------------------------------------------------------------------------

    def _started(self, what: str) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"{what} needs a started process; call bootup(argv) first")
        return self._proc

    @property
    def pid(self) -> int:
        return self._started("pid").pid

    @property
    def sentinel(self) -> int:
        """An fd that becomes readable when the process has exited; closed by ``shutdown``."""
        self._started("sentinel")
        fd = self._sentinel
        if fd is None:
            raise RuntimeError(f"the sentinel of {self.describe()} was closed by shutdown()")
        return fd

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped by ``poll``, ``wait`` or ``shutdown``; negative N for signal N."""
        return None if self._proc is None else self._proc.returncode

    def poll(self) -> int | None:
        """The exit status if the process has exited (reaping it), else None. Never blocks."""
        return self._started("poll()").poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the process exits and reap it; raise ``subprocess.TimeoutExpired`` after ``timeout``."""
        proc = self._started("wait()")
        if proc.returncode is None and not self._wait_for_exit(timeout):
            raise subprocess.TimeoutExpired(self._argv, timeout if timeout is not None else 0.0)
        return proc.wait()

    def _wait_for_exit(self, timeout: float | None) -> bool:
        """Block on the sentinel until the process has exited or ``timeout`` passes; does not reap."""
        proc = self._started("wait()")
        with self._fd_lock:
            # A private duplicate, so a concurrent shutdown() closing the sentinel cannot pull it from under us.
            fd = os.dup(self._sentinel) if self._sentinel is not None else None
        if fd is None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))))
        finally:
            os.close(fd)

    def describe(self) -> str:
        """``"pid 1234 (python -m xl_comm.worker)"``, for log and error messages."""
        if self._proc is None:
            return "a process not started yet"
        command = shlex.join([os.path.basename(self._argv[0]), *self._argv[1:]])
        if len(command) > _DESCRIBE_MAX_CHARS:
            command = command[: _DESCRIBE_MAX_CHARS - 3] + "..."
        return f"pid {self._proc.pid} ({command})"

    # -- stop ----------------------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> int | None:
        """Stop the process group, reap the process, close the sentinel; idempotent. Returns the exit status.

        With ``wait=False`` the escalation, the reaping and the closing run in a daemon thread and the return value
        is None if the process has not been reaped yet. Returns None, doing nothing, if ``bootup`` was never called.
        """
        self._shutdown_called = True
        proc = self._proc
        if proc is None:
            return None
        if wait:
            self._stop()
        else:
            with self._state_lock:
                if self._stopped or self._background is not None:
                    return proc.returncode
                thread = threading.Thread(target=self._stop, name=f"xl-spawn-shutdown-{proc.pid}", daemon=True)
                self._background = thread
            thread.start()
        return proc.returncode

    def _stop(self) -> None:
        proc = self._started("shutdown()")
        with self._stop_lock:
            if self._stopped:
                return
            if proc.returncode is None and not self._wait_for_exit(0):
                logger.debug("terminating %s", self.describe())
                self._signal_group(signal.SIGTERM)
                if not self._wait_for_exit(self._terminate_timeout):
                    logger.debug("killing %s after %.1f s", self.describe(), self._terminate_timeout)
                    self._signal_group(signal.SIGKILL)
                    self._wait_for_exit(None)
            # Unless poll()/wait() reaped it already, the leader is a zombie now, so its pid (our group id)
            # cannot have been reused: kill whatever it left behind in the group, then reap it.
            self._signal_group(signal.SIGKILL)
            if self._lifeline is not None:
                self._lifeline.close()  # disarmed first: the group id may be reused once the leader is reaped
            proc.wait()
            self._close_sentinel()
            self._stopped = True
        logger.debug("%s ended", self.describe())

    def _signal_group(self, signum: signal.Signals) -> None:
        if self._proc is None:
            return
        # ProcessLookupError: the group is empty; PermissionError: what remains of it is not ours to signal.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    def _close_sentinel(self) -> None:
        with self._fd_lock:
            fd, self._sentinel = self._sentinel, None
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> SubprocessSpawner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<SubprocessSpawner {self.describe()} returncode={self.returncode}>"

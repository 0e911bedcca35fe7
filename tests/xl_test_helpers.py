"""Task functions and small helpers shared by the cross-package suites.

Workers import this module by reference when they run a task defined here, so it imports the standard
library only: a fresh worker (one process per call) must not pay for importing pytest or numpy.

Tasks that must wait for the test coordinate through files in the test's ``tmp_path`` (a task writes a
``started`` marker, then waits for a ``release`` file), never through sleeps of a guessed length.
"""

from __future__ import annotations

import ctypes
import operator
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Upper bound for anything a task or a test waits for; a test that needs it has already failed.
WAIT_TIMEOUT = 60.0


# --- parent-side helpers ----------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_TIMEOUT, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; raise ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def wait_for_files(paths: list[Path], timeout: float = WAIT_TIMEOUT) -> None:
    wait_until(lambda: all(p.exists() for p in paths), timeout, what=f"files {[str(p) for p in paths]}")


def call_bounded(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn()`` in a daemon thread; return its result, re-raise its exception, or raise
    ``TimeoutError`` if it has not returned within ``timeout`` seconds (the thread is left behind)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"bounded: {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not return within {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


class Gate:
    """Hold tasks running until the test releases them.

    ``gate.args(name)`` are the ``started, release`` arguments of :func:`block_until_released`;
    ``gate.wait_started(name, ...)`` waits until those tasks are running; ``gate.release()`` lets them all go.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.release_path = directory / "release"

    def started_path(self, name: str) -> Path:
        return self.directory / f"started_{name}"

    def args(self, name: str) -> tuple[str, str]:
        return str(self.started_path(name)), str(self.release_path)

    def wait_started(self, *names: str, timeout: float = WAIT_TIMEOUT) -> None:
        wait_for_files([self.started_path(n) for n in names], timeout)

    def started(self, name: str) -> bool:
        return self.started_path(name).exists()

    def release(self) -> None:
        self.release_path.touch()

    def release_later(self, delay: float) -> threading.Timer:
        """Release from a timer thread after ``delay`` seconds (to release tasks while the test blocks)."""
        timer = threading.Timer(delay, self.release)
        timer.daemon = True
        timer.start()
        return timer


# --- plain tasks ------------------------------------------------------------------------------------------


def add(a: Any, b: Any) -> Any:
    return a + b


def square(x: Any) -> Any:
    return x * x


def times_two(x: Any) -> Any:
    return x * 2


def identity(x: Any) -> Any:
    return x


def get_pid() -> int:
    return os.getpid()


def get_cwd() -> str:
    return os.getcwd()


def get_env(name: str) -> str | None:
    return os.environ.get(name)


def sleep_and_return(value: Any, seconds: float) -> Any:
    time.sleep(seconds)
    return value


def sleep_and_get_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def note_pid_and_sleep(path: str, seconds: float) -> int:
    """Append this process's pid to ``path`` (one line per attempt), then sleep; returns the pid."""
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def get_worker_id(executorlib_worker_id: int) -> int:
    return executorlib_worker_id


def add_offset(x: int, offset: int) -> int:
    return x + offset


def needs_token(token: str) -> str:
    return token


def touch_and_return(path: str, value: Any) -> Any:
    Path(path).touch()
    return value


def block_until_released(value: Any, started: str, release: str, done: str | None = None) -> Any:
    """Mark ``started``, wait until ``release`` exists, optionally mark ``done``, return ``value``."""
    Path(started).touch()
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not Path(release).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"release file {release} never appeared")
        time.sleep(0.01)
    if done is not None:
        Path(done).touch()
    return value


def held_worker(started: str, release: str, executorlib_worker_id: int = -1, offset: int = 0) -> tuple[int, int, int]:
    """Block until released; then (executorlib_worker_id, the init function's offset, this process's pid)."""
    block_until_released(None, started, release)
    return executorlib_worker_id, offset, os.getpid()


def fast_or_blocking(i: int, directory: str) -> int:
    """Element 0 returns at once; every other element blocks until ``release`` and then marks ``done_<i>``."""
    if i == 0:
        return 0
    base = Path(directory)
    return block_until_released(i, str(base / f"started_{i}"), str(base / "release"), str(base / f"done_{i}"))


def worker_ids_barrier(
    directory: str, parties: int, executorlib_worker_id: int = -1, executorlib_worker_index: int = -1
) -> tuple[int, int]:
    """Both injected numbers, (executorlib_worker_id, executorlib_worker_index), once ``parties`` tasks run at once."""
    return worker_id_barrier(executorlib_worker_id, directory, parties), executorlib_worker_index


def get_worker_index(executorlib_worker_index: int) -> int:
    return executorlib_worker_index


def worker_id_barrier(executorlib_worker_id: int, directory: str, parties: int) -> int:
    """Return the injected worker id once ``parties`` tasks are running at the same time.

    Every running task leaves one file, so ``parties`` tasks can only pass together, each on its own worker.
    """
    base = Path(directory)
    (base / f"arrived_{os.getpid()}_{threading.get_ident()}").touch()
    deadline = time.monotonic() + WAIT_TIMEOUT
    while len(list(base.glob("arrived_*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(base.glob('arrived_*')))} of {parties} tasks ran concurrently")
        time.sleep(0.01)
    return executorlib_worker_id


class CustomError(Exception):
    """An exception type of our own, to check that remote exceptions keep their type."""


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def raise_custom_error(message: str, code: int) -> None:
    raise CustomError(message, code)


# --- crashing tasks ---------------------------------------------------------------------------------------


def exit_process(code: int) -> None:
    os._exit(code)


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(WAIT_TIMEOUT)  # the signal is delivered asynchronously; never return a result


def segfault() -> None:
    ctypes.string_at(0)


CRASHES: dict[str, tuple[Callable[..., None], tuple[Any, ...], str]] = {
    # name: (task, args, how the executor must name the exit)
    "os-exit-3": (exit_process, (3,), "EXIT(3)"),
    "sigkill": (kill_self, (signal.SIGKILL,), "SIGKILL(-9)"),
    "sigsegv-kill": (kill_self, (signal.SIGSEGV,), "SIGSEGV(-11)"),
    "sigsegv-ctypes": (segfault, (), "SIGSEGV(-11)"),
}


def record_attempt_and_exit(attempts: str, code: int) -> None:
    with open(attempts, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    os._exit(code)


def crash_once_then_return(marker: str, value: Any) -> Any:
    """Exit the process the first time (no ``marker`` yet), return ``value`` on every later call."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        os._exit(3)
    return value


def record_attempt_and_sys_exit(attempts: str, code: Any) -> None:
    """Note this process's pid in ``attempts``, then ``sys.exit(code)`` (a SystemExit, not an os._exit)."""
    with open(attempts, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    raise SystemExit(code)


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


# --- pickling failures ------------------------------------------------------------------------------------


def return_lock() -> Any:
    return threading.Lock()


class ReduceBoom(Exception):
    """Raised while pickling an argument in the caller."""


class RaisesOnPickle:
    def __reduce__(self) -> Any:
        raise ReduceBoom("this object refuses to be pickled")


class FailsOnUnpickle:
    """Pickles fine; unpickling calls ``1 / 0`` in whichever process loads it (the worker)."""

    def __reduce__(self) -> Any:
        return (operator.truediv, (1, 0))


def raise_base_exception(kind: type[BaseException]) -> None:
    raise kind("raised while unpickling")


class ExitsOnUnpickle:
    """Pickles fine; unpickling raises ``kind`` (SystemExit, KeyboardInterrupt), which is not an Exception."""

    def __init__(self, kind: type[BaseException]) -> None:
        self.kind = kind

    def __reduce__(self) -> Any:
        return (raise_base_exception, (self.kind,))


def return_exits_on_unpickle(kind: type[BaseException]) -> ExitsOnUnpickle:
    return ExitsOnUnpickle(kind)


# --- init functions ---------------------------------------------------------------------------------------


def init_offset() -> dict[str, int]:
    return {"offset": 10}


def init_token() -> dict[str, str]:
    return {"token": "init-ok"}


def failing_init() -> dict[str, Any]:
    raise LookupError("init failed on purpose")


def exiting_init() -> dict[str, Any]:
    raise SystemExit(4)


# --- futures as arguments ---------------------------------------------------------------------------------


def pack(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return the call's arguments as the worker received them (Futures must have become their results)."""
    return args, kwargs


def touch_and_add(path: str, a: Any, b: Any) -> Any:
    """Mark ``path`` (proof that the task ran), return ``a + b``."""
    Path(path).touch()
    return a + b


# -- MPI: these import mpi4py inside, so workers that never get an MPI task do not load it --------------------------


def mpi_rank_size(i: int) -> tuple[int, int, int]:
    from mpi4py import MPI

    return i, MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()


def mpi_raise_on_rank(bad_rank: int) -> int:
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    if rank == bad_rank:
        raise CustomError(f"rank {rank} failed", 7)
    return rank


def mpi_raise_then_barrier(bad_rank: int) -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == bad_rank:
        raise ValueError(f"rank {bad_rank} left the others in a barrier")
    comm.Barrier()
    return comm.Get_rank()


def mpi_kill_rank(bad_rank: int) -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == bad_rank:
        os.kill(os.getpid(), signal.SIGKILL)
    comm.Barrier()
    return comm.Get_rank()


def mpi_sum_of_ranks(offset: int) -> int:
    """A real collective call: the sum over ranks of (rank + offset)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return int(comm.allreduce(comm.Get_rank() + offset))


def mpi_raise_then_allreduce(bad_rank: int) -> int:
    """Rank 0 then waits in a pickle-based collective, which holds the GIL while it waits."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == bad_rank:
        raise ValueError(f"rank {bad_rank} left the others in allreduce")
    return int(comm.allreduce(comm.Get_rank()))


def mpi_kill_rank_once(bad_rank: int, marker: str) -> int:
    """The first attempt loses rank ``bad_rank`` to SIGKILL; a retry (on a restarted worker) succeeds."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == bad_rank and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    comm.Barrier()
    return comm.Get_rank()


def mpi_sys_exit_on_rank(bad_rank: int, code: int) -> int:
    """Rank ``bad_rank`` calls sys.exit(code); the others then wait in a barrier it never joins."""
    import sys

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == bad_rank:
        sys.exit(code)
    comm.Barrier()
    return comm.Get_rank()

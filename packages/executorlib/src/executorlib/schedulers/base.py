"""What both socket schedulers share: the task record, worker start-up, death reports and the exit hook."""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from xl_comm import EXIT_TEAM_ABORTED, Failure, Hub, Result, discard_key_file
from xl_serial import Frame, function_name
from xl_spawn import Spawner, SubprocessSpawner, describe_returncode, prepend_path, thread_env

from executorlib.dependencies import start_unless_cancelled
from executorlib.errors import ExecutorlibSocketError
from executorlib.launch import Launch, gpu_env
from executorlib.resources import Resources

#: After a worker's process is seen to exit, how long a reply that was already on its way may still arrive.
EXIT_GRACE_SECONDS = 0.2

_task_ids = itertools.count(1)


class TaskItem:
    """One submitted call: its Future, the pickled Task message, and what it asked for. A plain class with
    slots: one is made per task, on the submitting thread's critical path."""

    __slots__ = ("body", "fn", "future", "resources", "started", "task_id")

    def __init__(self, future: Future[Any], body: Sequence[Frame], resources: Resources, fn: Any) -> None:
        self.future = future
        self.body = body
        self.resources = resources
        self.fn = fn
        self.task_id = next(_task_ids)
        self.started = False

    @property
    def label(self) -> str:
        """The function's name, for messages."""
        return function_name(self.fn)

    def start(self) -> bool:
        """Gate a dispatch: False when the Future was cancelled meanwhile (then the task is dropped)."""
        if self.started:
            return True
        self.started = start_unless_cancelled(self.future)
        return self.started


def settle(future: Future[Any], reply: Result | Failure) -> None:
    """Complete ``future`` from a worker's reply (the rebuilt exception keeps its type and remote traceback)."""
    if isinstance(reply, Result):
        future.set_result(reply.value)
    else:
        future.set_exception(reply.error.rebuild())


class WorkerSpawner(Spawner, Protocol):
    """What the schedulers need of a worker's process: xl-spawn's Spawner and the tail of its stderr (the
    local :class:`~xl_spawn.SubprocessSpawner`, or a batch job standing in for the process)."""

    def stderr_tail(self, timeout: float = 2.0) -> str: ...


class SpawnerFactory(Protocol):
    def __call__(self, *, cwd: str | None, env: dict[str, str], keep_stderr: int) -> WorkerSpawner: ...


def overtime_error(item: TaskItem) -> TimeoutError:
    """What a task killed for exceeding its ``run_time_max`` fails with."""
    return TimeoutError(
        f"{item.label} exceeded run_time_max={item.resources.run_time_max} s and was killed; raise the limit "
        "(resource_dict={'run_time_max': ...}) or split the task"
    )


def death_error(worker_id: int, slot: int, spawner: WorkerSpawner, what: str) -> ExecutorlibSocketError:
    code = spawner.returncode
    exit_text = describe_returncode(code) if code is not None else "an unknown status"
    hint = ""
    if code is not None and code in (-9, 137):
        hint = " (SIGKILL often means the out-of-memory killer)"
    elif code == EXIT_TEAM_ABORTED:
        hint = (
            " (an MPI rank raised while rank 0 waited for it in a collective call, so the job was ended; that "
            "rank's traceback is on the worker's stderr)"
        )
    elif code is not None and code in (-11, 139):
        hint = " (SIGSEGV means a crash in compiled code; the worker's stderr shows the native stack)"
    last_words = spawner.stderr_tail()  # kept only when the launch asks (srun: slurmstepd names the step's fate)
    if code is not None and last_words:
        from xl_spawn import describe_srun_exit, parse_slurm_state

        if parse_slurm_state(last_words) is not None:
            exit_text, hint = describe_srun_exit(code, last_words), ""
    return ExecutorlibSocketError(
        f"worker {worker_id} (executorlib_worker_id {slot}, pid {spawner.pid}) died with {exit_text}{hint} while {what}"
    )


def start_worker(
    hub: Hub,
    worker_id: int,
    slot: int,
    resources: Resources,
    *,
    one_shot: bool,
    launch: Launch,
    gpus: Sequence[str] = (),
) -> WorkerSpawner:
    """Start a worker (``python -m xl_comm.worker``, or its MPI ranks) for this hub in its own process group; the
    caller then has the hub ``expect`` it (after recording the spawner, so exit callbacks always find it)."""
    args = [*hub.worker_args(worker_id), "--slot", str(slot)]
    if one_shot:
        args.append("--one-shot")
    # The key goes in a file the worker deletes once read; a launch whose workers may run on other hosts names
    # a shared directory for it.
    key_env = hub.worker_env(launch.key_directory(resources))
    env = {
        **key_env,
        **thread_env(resources.threads_per_core),
        **gpu_env(gpus),
        "PYTHONPATH": prepend_path(os.environ.get("PYTHONPATH"), *user_import_paths()),
    }
    # A launch may ask to keep the tail of the worker's stderr (still copied to ours) for death_error, and may
    # stand something else in for the process (a batch job: executorlib.schedulers.batch_workers).
    factory: SpawnerFactory = getattr(launch, "spawner", SubprocessSpawner)
    spawner = factory(cwd=resources.cwd, env=env, keep_stderr=getattr(launch, "keep_stderr", 0))
    try:
        spawner.bootup(launch.argv(resources, args))
    except BaseException:
        discard_key_file(key_env)  # no worker will read it
        raise
    return spawner


def user_import_paths() -> list[str]:
    """Where this process finds modules that a fresh interpreter would not: the caller's working directory and
    the ``sys.path`` entries added by scripts, notebooks or pytest (multiprocessing's spawn mode hands the same to
    its children). Installed locations are left out: the worker's interpreter has them already."""
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    paths = [os.getcwd()]
    for entry in sys.path:
        path = os.path.abspath(entry) if entry else os.getcwd()
        if not path.startswith(installed) and os.path.isdir(path):
            paths.append(path)
    return paths


class ExitHook:
    """Shuts down, at interpreter exit, every executor and scheduler still running (the stdlib pools do the
    same): executors first, so tasks waiting for Future arguments are released before their schedulers stop."""

    _executors: weakref.WeakSet[Any] = weakref.WeakSet()
    _schedulers: weakref.WeakSet[Any] = weakref.WeakSet()
    _lock = threading.Lock()
    _registered = False

    @classmethod
    def add(cls, scheduler: Any) -> None:
        cls._register(cls._schedulers, scheduler)

    @classmethod
    def add_executor(cls, executor: Any) -> None:
        cls._register(cls._executors, executor)

    @classmethod
    def _register(cls, live: weakref.WeakSet[Any], obj: Any) -> None:
        with cls._lock:
            live.add(obj)
            if not cls._registered:
                atexit.register(cls._run)
                cls._registered = True

    @classmethod
    def _run(cls) -> None:
        for live in (cls._executors, cls._schedulers):
            for obj in list(live):
                obj.shutdown(wait=True)

"""What both worker schedulers (per call, pool) share: packing a call, the task record, starting a worker through
a launcher, death reports and the exit hook."""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from xl_comm import EXIT_TEAM_ABORTED, Failure, Hub, Result, discard_key_file, pack_task
from xl_serial import Frame, frames_nbytes, function_name
from xl_spawn import describe_returncode, prepend_path, thread_env

from executorlib.caching import CachedFuture
from executorlib.dependencies import start_unless_cancelled
from executorlib.errors import ExecutorlibSocketError
from executorlib.gpus import gpu_env
from executorlib.launchers.protocol import Launcher, WorkerSpawner, user_import_paths
from executorlib.resources import Resources

log = logging.getLogger("executorlib")

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
    if isinstance(future, CachedFuture) and isinstance(reply, Result):
        future.set_timed_result(reply.value, reply.runtime)  # the cache entry records the function's time
    elif isinstance(reply, Result):
        future.set_result(reply.value)
    else:
        future.set_exception(reply.error.rebuild())


def overtime_error(item: TaskItem) -> TimeoutError:
    """What a task killed for exceeding its ``run_time_max`` fails with."""
    return TimeoutError(
        f"{item.label} exceeded run_time_max={item.resources.run_time_max} s and was killed; raise the limit "
        "(resource_dict={'run_time_max': ...}) or split the task"
    )


def process_name(spawner: WorkerSpawner) -> str:
    """What a worker runs as, in messages: ``pid 1234``, ``flux job ƒ2X5Zyb``, ``SLURM job 17``."""
    return spawner.describe().split(" (")[0]


def death_error(worker_id: int, worker_index: int, spawner: WorkerSpawner, what: str) -> ExecutorlibSocketError:
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
    # Kept only when the launcher asks: slurmstepd names a step's fate, a flux job ends with flux's exception.
    last_words = spawner.stderr_tail()
    process = process_name(spawner)
    if code is not None and last_words:
        from xl_spawn import describe_srun_exit, parse_slurm_state

        from executorlib.launchers.flux import flux_exception

        if parse_slurm_state(last_words) is not None:
            exit_text, hint = describe_srun_exit(code, last_words), ""
        elif (exception := flux_exception(last_words)) is not None:
            exit_text, hint = f"{exit_text}: {exception}", ""
    return ExecutorlibSocketError(
        f"worker {worker_id} (executorlib_worker_id {worker_index}, {process}) died with {exit_text}{hint} while {what}"
    )


def start_worker(
    hub: Hub,
    worker_id: int,
    worker_index: int,
    resources: Resources,
    *,
    one_shot: bool,
    launcher: Launcher,
    gpus: Sequence[str] = (),
) -> WorkerSpawner:
    """Start a worker (``python -m xl_comm.worker``, or its MPI ranks) for this hub through ``launcher``; the
    caller then has the hub ``expect`` it (after recording the spawner, so exit callbacks always find it).
    ``worker_index`` is what the task sees as ``executorlib_worker_id``."""
    args = [*hub.worker_args(worker_id), "--worker-index", str(worker_index)]
    if one_shot:
        args.append("--one-shot")
    # The key goes in a file the worker deletes once read; a launcher whose workers may run on other hosts names
    # a shared directory for it.
    key_env = hub.worker_env(launcher.key_directory(resources))
    env = {
        **key_env,
        **thread_env(resources.threads_per_core),
        **gpu_env(gpus),
        "PYTHONPATH": prepend_path(os.environ.get("PYTHONPATH"), *user_import_paths()),
    }
    spawner = launcher.spawner(resources, env=env, keep_stderr=launcher.keep_stderr)
    try:
        spawner.bootup(launcher.argv(resources, args))
    except BaseException:
        discard_key_file(key_env)  # no worker will read it
        raise
    return spawner


class WorkerScheduler:
    """The ``submit`` of the worker schedulers: the call is pickled here, on the submitting thread (so an
    unpicklable argument fails its own Future), and queued as a :class:`TaskItem` by the subclass's
    ``_enqueue``."""

    handles_dependencies = False
    _log_obj_size = False

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        resources: Resources,
        extras: Mapping[str, Any],
        future: Future[Any],
    ) -> None:
        try:
            body = pack_task(fn, args, kwargs, resources.error_log_file)
        except Exception as problem:
            future.set_exception(problem)
            return
        if self._log_obj_size:  # executorlib 1.x's line and level: shown on stderr unless logging is configured
            log.warning("Send dictionary of size: %d", frames_nbytes(body))
        self._enqueue(TaskItem(future, body, resources, fn))

    def _enqueue(self, item: TaskItem) -> None:
        raise NotImplementedError


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

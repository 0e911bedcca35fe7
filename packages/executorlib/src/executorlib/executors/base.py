"""BaseExecutor: the stdlib ``Executor`` surface over a task scheduler."""

from __future__ import annotations

import logging
import sys
import sysconfig
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from types import TracebackType
from typing import Any, Protocol

from xl_comm.framing import pack_body
from xl_comm.messages import Task
from xl_serial import frames_nbytes, function_name, register_by_value

from executorlib.resources import BackendRules, Resources, merge, parse_resource_dict
from executorlib.schedulers.base import TaskItem

log = logging.getLogger("executorlib")


class Scheduler(Protocol):
    def submit(self, item: TaskItem) -> None: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...

    @property
    def queued(self) -> int: ...

    def info(self) -> dict[str, Any]: ...


class BaseExecutor(Executor):
    """Common base of every executorlib executor (use it for ``isinstance`` checks)."""

    _scheduler: Scheduler

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        resources: Resources,
        rules: BackendRules,
        fixed_resources: bool,
        log_obj_size: bool = False,
    ) -> None:
        self._scheduler = scheduler
        self._resources = resources
        self._rules = rules
        self._fixed_resources = fixed_resources
        self._log_obj_size = log_obj_size
        self._shutdown_lock = threading.Lock()
        self._is_shutdown = False
        # An executor dropped without shutdown() still lets its workers finish and go.
        self._finalizer = weakref.finalize(self, scheduler.shutdown, False)

    def submit(  # type: ignore[override]
        self, fn: Callable[..., Any], /, *args: Any, resource_dict: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; ``resource_dict`` overrides the executor's resources for this call."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable as its first argument, got {type(fn).__name__} {fn!r}")
        with self._shutdown_lock:
            if self._is_shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        resources = self._task_resources(resource_dict)
        future: Future[Any] = Future()
        try:
            body = pack_body(Task(fn, args, kwargs, error_log_file=resources.error_log_file))
        except Exception as problem:
            future.set_exception(problem)
            return future
        if self._log_obj_size:
            log.info("submit %s: %d bytes", function_name(fn), frames_nbytes(body))
        self._scheduler.submit(TaskItem(future, body, resources, function_name(fn)))
        return future

    def _task_resources(self, resource_dict: Mapping[str, Any] | None) -> Resources:
        where = "submit(..., resource_dict=...)"
        overrides = parse_resource_dict(resource_dict, where=where)
        if self._fixed_resources:
            fixed = sorted(set(overrides) - {"error_log_file"})
            if fixed:
                from executorlib.errors import ResourceDictError

                raise ResourceDictError(
                    f"{where}: with block_allocation=True the resources of the workers are fixed at construction, "
                    f"so resource_dict key(s) {', '.join(repr(k) for k in fixed)} cannot change per call "
                    f"({ {k: overrides[k] for k in fixed} }); pass them to the constructor's resource_dict, or use "
                    "block_allocation=False to get a fresh process with its own resources per call"
                )
        resources = merge(self._resources, overrides)
        self._rules.check(resources, where=where)
        self._check_task(resources, where=where)
        return resources

    def _check_task(self, resources: Resources, *, where: str) -> None:
        """Backend-specific checks of one task's resources (e.g. against max_cores)."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stdlib semantics: no new tasks; ``cancel_futures`` cancels queued ones; ``wait`` blocks until all ran."""
        with self._shutdown_lock:
            self._is_shutdown = True
        self._scheduler.shutdown(wait, cancel_futures=cancel_futures)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Ctrl-C in a notebook should not leave the user waiting for every queued task.
        self.shutdown(wait=True, cancel_futures=exc_type is KeyboardInterrupt)

    def __len__(self) -> int:
        """Tasks queued and not yet handed to a worker."""
        return self._scheduler.queued

    def __bool__(self) -> bool:
        return True

    @property
    def info(self) -> dict[str, Any]:
        return self._scheduler.info()

    @property
    def max_workers(self) -> int | None:
        value = self._scheduler.info().get("max_workers")
        return value if isinstance(value, int) else None


def register_caller_module(depth: int = 1) -> None:
    """Pickle by value the functions of the user's module that created the executor, unless workers can import
    it anyway (installed packages). ``__main__`` is always shipped by value by cloudpickle."""
    frame = sys._getframe(depth + 1)
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith("executorlib"):
        frame = frame.f_back
    name = frame.f_globals.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    path = getattr(module, "__file__", None)
    if module is None or path is None or name == "__main__":
        return
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    if not any(str(path).startswith(prefix) for prefix in installed):
        register_by_value(module)

"""BaseExecutor: the stdlib ``Executor`` surface over one :class:`~executorlib.schedulers.protocol.Scheduler`.

It owns what every executor does the same way: argument checks of ``submit``, per-call resources, graph mode,
and, for the worker schedulers, Future arguments (parked here until done) and the result cache.
"""

from __future__ import annotations

import inspect
import logging
import queue
import sys
import sysconfig
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Executor, Future
from types import TracebackType
from typing import Any

from xl_graph import GraphPicture
from xl_serial import function_name, register_by_value

from executorlib.caching import PER_CALL_KEYS, CachedFuture, ResultCache
from executorlib.dependencies import Batches, Parked, cancel_and_notify, upstream_futures
from executorlib.graph_mode import GraphRecorder, LiveGraph
from executorlib.resources import KEYS, ExecutorRules, Resources, merge, parse_resource_dict
from executorlib.schedulers.protocol import Scheduler
from executorlib.schedulers.workers import ExitHook
from executorlib.status import ExecutorStatus, TaskFuture, TaskTally, executor_html, executor_text

log = logging.getLogger("executorlib")

_NO_EXTRAS: Mapping[str, Any] = {}


class BaseExecutor(Executor):
    """Common base of every executorlib executor (use it for ``isinstance`` checks). The public executors build
    it from their checked arguments; it is not meant to be created directly.

    Args:
        scheduler: Runs the calls (:class:`~executorlib.schedulers.protocol.Scheduler`): a worker per call, a
            pool, task files, or nothing in graph mode.
        resources: The executor's resources, the defaults of every call.
        rules: The ``resource_dict`` keys this executor refuses, with the fix for each.
        fixed_resources: True (block allocation): a call may change only its cache keys, not its resources.
        extras: None when ``resource_dict`` takes executorlib keys only; else the job template variables every
            call gets (file mode), and a call's other keys are template variables too.
        disable_dependencies: True: a Future argument is an error at ``submit()``.
        graph: Graph mode's recorder (nothing runs), or None.
        record_dependency_graph: True: record the graph of a run that executes (``dependency_graph()``).
        wait: False: every ``shutdown`` returns without waiting (executorlib 1.x's cluster executors).
    """

    _scheduler: Scheduler

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        resources: Resources,
        rules: ExecutorRules,
        fixed_resources: bool,
        extras: Mapping[str, Any] | None = None,
        disable_dependencies: bool = False,
        graph: GraphRecorder | None = None,
        record_dependency_graph: bool = False,
        wait: bool = True,
    ) -> None:
        self._scheduler = scheduler
        self._hub_ref = scheduler.hub_ref
        self._resources = resources
        self._rules = rules
        self._fixed_resources = fixed_resources
        self._template_keys = extras is not None
        self._extras: Mapping[str, Any] = dict(extras) if extras else _NO_EXTRAS
        self._wait = wait
        self._disable_dependencies = disable_dependencies
        self._graph = graph
        self._live_graph = LiveGraph() if record_dependency_graph else None
        self._shutdown_lock = threading.Condition()
        self._is_shutdown = False
        self._parked: set[Parked] = set()
        self._releasing = threading.local()  # .parked: the task this thread is releasing (its Future's callbacks)
        self._deferred_shutdown: tuple[bool, bool] | None = None
        self._cache = ResultCache()
        self._tally = TaskTally()
        # An executor dropped without shutdown() still lets its workers finish and go.
        self._finalizer = weakref.finalize(self, scheduler.shutdown, False)
        self._finalizer.atexit = False  # at exit ExitHook shuts down in order: waiting tasks first
        ExitHook.add_executor(self)
        if log.isEnabledFor(logging.INFO):
            log.info("%s ready: %s", type(self).__name__, scheduler.info())

    def submit(  # type: ignore[override]
        self, fn: Callable[..., Any], /, *args: Any, resource_dict: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; ``resource_dict`` overrides the executor's resources for this call."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable as its first argument, got {type(fn).__name__} {fn!r}")
        if takes_resource_dict(fn):
            raise ValueError(
                f"submit({function_name(fn)}, ...): the function has a parameter named 'resource_dict', a name "
                "executorlib reserves for the resources of a call (submit(fn, resource_dict=...)), so the function "
                "could never receive it (executorlib 1.x rejects it too); rename that parameter"
            )
        if self._is_shutdown:  # read without the lock: the scheduler checks again under its own
            raise RuntimeError("cannot schedule new futures after shutdown")
        resources, extras = self._task_resources(resource_dict) if resource_dict else (self._resources, self._extras)
        if self._graph is not None:
            return self._graph.record(fn, args, kwargs)
        upstream = upstream_futures(args, kwargs) if args or kwargs else []
        if upstream and self._disable_dependencies:
            raise ValueError(
                f"submit({function_name(fn)}, ...) got {len(upstream)} Future argument(s), but this executor was "
                "created with disable_dependencies=True; pass the results instead (future.result()), or drop "
                "disable_dependencies"
            )
        if self._scheduler.handles_dependencies:  # task files: the scheduler links and caches the call itself
            future: Future[Any] = TaskFuture(fn, self._tally)
            if self._live_graph is not None:
                self._live_graph.record(fn, args, kwargs, future)
            self._scheduler.submit(fn, args, kwargs, resources, extras, future)
            return future
        future = CachedFuture(fn, self._tally) if resources.cache_directory is not None else TaskFuture(fn, self._tally)
        if self._hub_ref is not None:
            future.hub_ref = self._hub_ref
        if self._live_graph is not None:
            self._live_graph.record(fn, args, kwargs, future)
        if not upstream:
            self._dispatch(fn, args, kwargs, resources, extras, future)
            return future

        parked = ParkedCall(future, args, kwargs, upstream, _release_call)
        parked.owner, parked.fn, parked.resources, parked.extras = self, fn, resources, extras
        with self._shutdown_lock:
            self._parked.add(parked)
        parked.start()
        return future

    def _dispatch(
        self,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        resources: Resources,
        extras: Mapping[str, Any],
        future: Future[Any],
    ) -> None:
        """Hand a call whose arguments are ready to the scheduler (which pickles it on this thread, so an
        unpicklable argument fails this Future). With a cache directory the call is looked up first: a hit
        completes the Future and starts no worker."""
        if resources.cache_directory is not None and self._cache.serve(fn, args, kwargs, resources, future):
            return
        self._scheduler.submit(fn, args, kwargs, resources, extras, future)

    def _released(self, parked: ParkedCall, args: Any, kwargs: Any, error: BaseException | None) -> None:
        """The last upstream Future of a parked task is done (or one failed): run it, or fail it, never drop it."""
        future = parked.future
        self._releasing.parked = parked  # a done-callback that calls shutdown() must not wait for this release
        try:
            if future.cancelled():
                cancel_and_notify(future)  # cancelled by the user while it waited
            elif isinstance(error, CancelledError):
                cancel_and_notify(future)  # a cancelled upstream cancels its dependents, which cancel theirs
            elif error is not None:
                future.set_exception(error)  # the upstream's own exception: `except ValueError` keeps working
            else:
                self._dispatch(parked.fn, args, kwargs, parked.resources, parked.extras, future)
        except BaseException as problem:
            if not future.done():
                future.set_exception(problem)
        finally:
            self._releasing.parked = None
            with self._shutdown_lock:
                self._parked.discard(parked)
                deferred = self._deferred_shutdown if not self._parked else None
                if deferred is not None:
                    self._deferred_shutdown = None
                self._shutdown_lock.notify_all()
            if deferred is not None:
                self._scheduler.shutdown(deferred[0], cancel_futures=deferred[1])

    def _task_resources(self, resource_dict: Mapping[str, Any]) -> tuple[Resources, Mapping[str, Any]]:
        """The call's resources (the executor's, overridden by ``resource_dict``) and job template variables."""
        where = "submit(..., resource_dict=...)"
        if self._template_keys:
            overrides, own = split_resource_dict(resource_dict, where=where)
            extras = {**self._extras, **own} if own else self._extras
        else:
            overrides, extras = parse_resource_dict(resource_dict, where=where), self._extras
        if self._fixed_resources:
            fixed = sorted(set(overrides) - PER_CALL_KEYS)
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
        self._check_task(resources, extras, where=where)
        return resources, extras

    def _check_task(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        """Executor-specific checks of one task's resources (e.g. against max_cores, or the job template)."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stdlib semantics: no new tasks; ``cancel_futures`` cancels queued ones (and ones waiting for their
        arguments); ``wait`` blocks until all ran. Tasks still waiting for a Future argument are released first.

        Called from a done-callback that runs on one of this executor's own threads (the hub's IO thread, the
        cache writer), it cannot wait for work that thread still has to do: it then returns at once, like
        ``wait=False``, and the executor finishes on its own."""
        wait = wait and self._wait
        with self._shutdown_lock:
            already, self._is_shutdown = self._is_shutdown, True
            parked = list(self._parked)
        if self._graph is not None and not already:
            self._graph.write()
        for task in parked:
            if cancel_futures:
                cancel_and_notify(task.future)  # releases it, even if its upstream never completes
            else:
                task.catch_up()
        wait = wait and not self._on_own_thread()
        mine = getattr(self._releasing, "parked", None)
        with self._shutdown_lock:
            if self._parked:
                if not wait:  # the last release shuts the scheduler down
                    self._deferred_shutdown = (False, cancel_futures)
                    return
                self._shutdown_lock.wait_for(lambda: not self._parked or self._parked == {mine})
        self._scheduler.shutdown(wait, cancel_futures=cancel_futures)
        self._cache.shutdown(wait)  # results already handed to the cache writer are written first

    def _on_own_thread(self) -> bool:
        """Whether the caller runs on a thread this executor's Futures are completed from."""
        hub = self._hub_ref() if self._hub_ref is not None else None
        return (hub is not None and hub.in_io_thread()) or self._cache.in_writer_thread()

    def _status(self) -> ExecutorStatus:
        """A snapshot for the repr: the scheduler's state and the tasks counted by their outcome."""
        state = self._scheduler.state()
        with self._shutdown_lock:
            parked = len(self._parked)
        submitted, done, failed, cancelled = self._tally.snapshot()
        queued = parked + state.queued
        return ExecutorStatus(
            executor=type(self).__name__,
            scheduler=state,
            queued=queued,
            running=max(0, submitted - done - failed - cancelled - queued),
            done=done,
            failed=failed,
            cancelled=cancelled,
            cache_directory=self._resources.cache_directory,
            shut_down=self._is_shutdown,
        )

    def __repr__(self) -> str:
        return executor_text(self._status())

    def _repr_html_(self) -> str:
        return executor_html(self._status())

    def dependency_graph(self, filename: str | None = None) -> GraphPicture:
        """The picture of the tasks submitted so far (needs ``record_dependency_graph=True``); shown inline in
        Jupyter, written to ``filename`` when given (format from the extension: .svg, .png, .pdf, .dot, ...)."""
        recorded = self._live_graph.graph if self._live_graph is not None else None
        if recorded is None and self._graph is not None:
            recorded = self._graph.graph
        if recorded is None:
            raise ValueError(
                "dependency_graph() needs an executor created with record_dependency_graph=True (the run executes "
                "and its graph is kept) or plot_dependency_graph=True (the graph is recorded, nothing runs)"
            )
        picture = GraphPicture(recorded)
        if filename is not None:
            picture.save(filename)
        return picture

    def batched(self, iterable: Iterable[Future[Any]], n: int) -> list[Future[Any]]:
        """Futures of lists of ``n`` results each, filled in completion order (the last list may be shorter)."""
        return Batches(iterable, n).batches

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[Any]:
        """Stdlib ``map``; an iterable that is itself a Future is waited for first (executorlib 1.x)."""
        resolved = [it.result() if isinstance(it, Future) else it for it in iterables]
        return super().map(fn, *resolved, timeout=timeout, chunksize=chunksize)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Ctrl-C in a notebook should not leave the user waiting for every queued task.
        self.shutdown(wait=True, cancel_futures=exc_type is KeyboardInterrupt)

    def __len__(self) -> int:
        """Tasks not yet handed on (1.x: the size of ``future_queue``); 0 after shutdown."""
        if self._is_shutdown:
            return 0
        with self._shutdown_lock:
            parked = len(self._parked)
        return parked + self._scheduler.queued

    @property
    def future_queue(self) -> queue.Queue[dict[str, Any]] | None:
        """executorlib 1.x's queue of tasks not yet handed on, None after shutdown. Here it is a snapshot, one
        ``{"future": f}`` per task, tasks waiting for Future arguments first: putting into it runs nothing, and
        cancelling its Futures (``executorlib.api.cancel_items_in_queue``) cancels those tasks."""
        if self._is_shutdown:
            return None
        with self._shutdown_lock:
            futures = [parked.future for parked in self._parked]
        snapshot: queue.Queue[dict[str, Any]] = queue.Queue()
        for future in [*futures, *self._scheduler.pending()]:
            snapshot.put({"future": future})
        return snapshot

    def __bool__(self) -> bool:
        return True

    @property
    def info(self) -> dict[str, Any] | None:
        """executorlib 1.x's description of the executor's configuration (the arguments as given, plus the pool's
        current size with block allocation); None after shutdown. Live, derived values: :meth:`status`."""
        if self._is_shutdown:
            return None
        return self._describe()

    def _describe(self) -> dict[str, Any]:
        """The ``info`` dict while open; each executor family builds its own (see executors/info.py)."""
        return {}

    def status(self) -> dict[str, Any]:
        """What the executor is doing now: its scheduler's derived values (core budget, pool size, running jobs,
        queue status queries, ...), the tasks not yet handed on (``queued``) and whether it is shut down."""
        return {**self._scheduler.info(), "queued": len(self), "shutdown": self._is_shutdown}

    @property
    def max_workers(self) -> int | None:
        """With block allocation the pool's current number of workers; otherwise the constructor's ``max_workers``
        as given (None in file mode); None after shutdown (executorlib 1.x)."""
        if self._is_shutdown:
            return None
        return self._worker_count()

    @max_workers.setter
    def max_workers(self, workers: int) -> None:
        """Resize the pool of a ``block_allocation=True`` executor (executorlib 1.x): growing returns at once, the
        new workers boot meanwhile; shrinking returns once the surplus workers have finished their task and exited.
        Other executors raise NotImplementedError, as in 1.x."""
        self._resize(workers)

    def _resize(self, workers: int) -> None:
        raise NotImplementedError("The max_workers setter is not implemented.")

    def _worker_count(self) -> int | None:
        return None


def takes_resource_dict(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` declares a parameter named ``resource_dict`` (False when it has no signature to read, as
    some builtins). A plain function's code object answers without building a signature (on every submit)."""
    code = getattr(fn, "__code__", None)
    if type(fn) is types.FunctionType and code is not None:
        return "resource_dict" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    try:
        return "resource_dict" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


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


def split_resource_dict(
    resource_dict: Mapping[str, Any] | None, *, where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """File mode: the executorlib keys (checked) and the rest, which the job script template receives as
    variables."""
    if not resource_dict:
        return {}, {}
    if not isinstance(resource_dict, Mapping):
        parse_resource_dict(resource_dict, where=where)  # raises the usual message
    known = {k: v for k, v in resource_dict.items() if k in KEYS or k in ("openmpi_oversubscribe", "max_workers")}
    extras = {k: v for k, v in resource_dict.items() if k not in known}
    for name in extras:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"{where}: resource_dict key {name!r} is neither an executorlib resource nor a job template "
                "variable name (a Python identifier)"
            )
    return parse_resource_dict(known, where=where), extras


class ParkedCall(Parked):
    """A parked task of an executor: the call it makes once released. Slots and one module-level release
    function instead of a closure per task, since every byte here is paid per pending task."""

    __slots__ = ("extras", "fn", "owner", "resources")

    owner: BaseExecutor
    fn: Callable[..., Any]
    resources: Resources
    extras: Mapping[str, Any]


def _release_call(parked: Parked, args: Any, kwargs: Any, error: BaseException | None) -> None:
    assert isinstance(parked, ParkedCall)
    parked.owner._released(parked, args, kwargs, error)

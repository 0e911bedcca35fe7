"""TaskFileScheduler, the file-mode scheduler of the cluster executors: every call is a task file in the cache,
run by a job that a :class:`~executorlib.launchers.protocol.JobLauncher` starts.

A call becomes ``<cache>/<key>_i.h5`` (xl-cache); a job (an ``sbatch`` job, or a local process for
``TestClusterExecutor``) runs ``python -m xl_cache.worker <key>_i.h5``, which writes ``<key>_o.h5``. A Future
argument produced by this scheduler is written as an :class:`xl_cache.OutputRef` to the upstream task's output
(its selector included, for ``get_item_from_future``/``split_future``), and the job launcher orders the jobs:
SLURM by ``--dependency=afterok:A:B``, local processes by starting one once its upstream processes ended. So the
submitting process may exit and a later one, submitting the same calls, finds the results, or re-attaches to the
jobs still queued or running (their ids are recorded in the task files, or for local processes in
``<key>/queue_id``), and never runs two jobs for a key at once.

Nothing here polls: process ends arrive through pidfds (local) or from the one queue watcher of the SLURM
launcher, cancellations through the Futures' done-callbacks, and ``shutdown(wait=True)`` waits on a condition.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

from xl_cache import log_tail, read_queue_id_file
from xl_graph import FutureSelector, find_futures, substitute

from executorlib.caching import task_resource_dict
from executorlib.dependencies import Parked, cancel_and_notify
from executorlib.errors import JobFailedError
from executorlib.launchers.protocol import JobLauncher
from executorlib.resources import Resources
from executorlib.status import SchedulerState, TaskFuture
from executorlib.task_file import FileTask, JobEnd, note_input, remove_input, upstream_lost

#: Where task files go when neither the executor nor the call names a cache directory.
DEFAULT_CACHE_DIRECTORY = "executorlib_cache"

#: Lines of a job's log quoted in the error of a job that ended without output.
LOG_TAIL_LINES = 20


def _settle(future: Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled by its user meanwhile: wait() and as_completed() must count it done
        cancel_and_notify(future)


class TaskFileScheduler:
    """Task files through xl-cache, jobs through a :class:`~executorlib.launchers.protocol.JobLauncher`."""

    hub_ref = None  # Futures complete from job files, not from a hub
    handles_dependencies = True  # upstream Futures become job dependencies; the cache directory is the cache

    def __init__(self, launcher: JobLauncher) -> None:
        self._launcher = launcher
        self._detached = False  # shut down with wait=False: later shutdowns (the exit hook's) leave the jobs alone
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._of_future: weakref.WeakKeyDictionary[Future[Any], FileTask] = weakref.WeakKeyDictionary()
        self._in_flight: dict[tuple[str, str], FileTask] = {}
        self._waiting: set[Parked] = set()  # calls waiting for Futures of other executors
        self._delivering = threading.local()  # .depth > 0 while this thread completes Futures of ended jobs
        self._closed = False
        launcher.bind(self._job_ended, self._lock)

    # -- submit ------------------------------------------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        resources: Resources,
        extras: Mapping[str, Any],
        future: Future[Any],
    ) -> None:
        """Turn the call into a task file and a job (or reuse the cached result, or a job already running)."""
        try:
            self._launcher.check(resources, extras, where="submit()")
            args, kwargs, upstream, waiting = self._link_arguments(args, kwargs)
        except Exception as problem:
            _settle(future, error=problem)
            return
        if waiting:
            self._park(fn, args, kwargs, resources, extras, future, waiting)
            return
        try:
            self._submit_linked(fn, args, kwargs, resources, extras, future, upstream)
        except Exception as problem:
            _settle(future, error=problem)

    def _link_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], list[FileTask], list[Future[Any]]]:
        """Futures of this scheduler become OutputRefs; finished foreign ones their values; the rest is waited for."""
        from xl_cache import OutputRef

        futures = find_futures((args, kwargs))
        if not futures:
            return args, kwargs, [], []
        values: dict[int, Any] = {}
        upstream: list[FileTask] = []
        waiting: list[Future[Any]] = []
        for argument in futures:
            base, selector = argument, None
            if isinstance(argument, FutureSelector) and argument.future in self._of_future:
                base, selector = argument.future, argument.selector
            task = self._of_future.get(base)
            if task is not None:
                if task.lost is not None:
                    raise RuntimeError(
                        f"the argument produced by task {task.key} ({task.label}) is not available: {task.lost}"
                    ) from task.lost
                values[id(argument)] = OutputRef(task.cache_directory, task.key, selector)
                if task not in upstream:
                    upstream.append(task)
            elif argument.done():
                if argument.cancelled():
                    raise CancelledError(f"a Future argument was cancelled: {argument!r}")
                values[id(argument)] = argument.result()  # raises the upstream's own exception
            else:
                waiting.append(argument)
        if waiting:
            return args, kwargs, [], waiting
        linked_args, linked_kwargs = substitute((args, kwargs), values)
        return linked_args, linked_kwargs, upstream, []

    def _park(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        resources: Resources,
        extras: Mapping[str, Any],
        future: Future[Any],
        waiting: list[Future[Any]],
    ) -> None:
        """Wait (by done-callbacks) for Futures that other executors produce, then submit again. Cancelling
        ``future`` meanwhile releases the call at once, even if those Futures never complete."""

        def release(parked: Parked, args: Any, kwargs: Any, error: BaseException | None) -> None:
            try:
                if future.cancelled() or isinstance(error, CancelledError):
                    cancel_and_notify(future)
                elif error is not None:
                    _settle(future, error=error)  # the upstream's own exception
                else:
                    self.submit(fn, args, kwargs, resources, extras, future)
            finally:
                with self._lock:
                    self._waiting.discard(parked)
                    self._idle.notify_all()

        parked = Parked(future, args, kwargs, waiting, release, substitute=False)
        with self._lock:
            self._waiting.add(parked)
        parked.start()

    def _submit_linked(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        resources: Resources,
        extras: Mapping[str, Any],
        future: Future[Any],
        upstream: list[FileTask],
    ) -> None:
        import xl_cache
        from xl_serial import function_name, task_key

        directory = os.path.abspath(resources.cache_directory or DEFAULT_CACHE_DIRECTORY)
        key = resources.cache_key or task_key(fn, args, kwargs)
        resources = _absolute_cwd(resources)
        with self._lock:
            task = self._in_flight.get((directory, key))
            if task is not None:  # the same call is already running here: share its job
                self._adopt(task, future)
                return
        outcome = xl_cache.load_result(directory, key)
        if outcome is not None:  # a cached result (or cached exception) never launches a job
            _settle(future, result=outcome.value if outcome.status == "done" else None, error=_error_of(outcome))
            return
        task = FileTask(key, directory, function_name(fn), resources, dict(extras), upstream=upstream)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._in_flight[(directory, key)] = task
            self._adopt(task, future)
        try:
            if self._reattach(task):
                return
            if os.path.exists(task.output_file):  # its job finished since the lookup above
                self._job_ended(task, JobEnd("COMPLETED"))
                return
            self._start(task, fn, args, kwargs)
        except BaseException as problem:
            with self._lock:
                self._in_flight.pop((directory, key), None)
                task.ended = True
                task.lost = problem
                futures = list(task.futures)
                self._idle.notify_all()
            remove_input(task)  # a failed submission is not a result: the next run tries again
            for each in futures:
                _settle(each, error=problem)

    def _adopt(self, task: FileTask, future: Future[Any]) -> None:
        if isinstance(future, TaskFuture):
            future.job = task  # its repr shows the key and the job id
        task.futures.append(future)
        self._of_future[future] = task
        future.add_done_callback(lambda f: self._future_done(task, f))

    def _reattach(self, task: FileTask) -> bool:
        """A pending task file from an earlier run whose job is still alive: watch that job instead."""
        if not os.path.exists(task.input_file):
            return False
        queue_id = read_queue_id_file(task.queue_id_file)
        if queue_id is None:
            from xl_cache import read_entry

            try:
                queue_id = read_entry(task.input_file).queue_id
            except Exception:  # unreadable, or the job just finished and removed it: submit anew
                return False
        if queue_id is None:
            return False
        task.queue_id = queue_id
        note_input(task)
        if self._launcher.attach(task):
            return True
        task.queue_id = task.input_identity = None
        return False

    def _start(self, task: FileTask, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        import xl_cache

        xl_cache.write_input(
            task.cache_directory,
            task.key,
            fn,
            args,
            kwargs,
            resource_dict={**task_resource_dict(task.resources), **task.extras},
            error_log_file=task.resources.error_log_file,
        )
        note_input(task)
        self._launch(task)

    def _launch(self, task: FileTask) -> None:
        """Start the job of ``task`` after its upstream jobs still running. An upstream that ended without output
        (since the call was linked to it) ends this task as its job would have, without starting one."""
        with self._lock:
            lost = next((up for up in task.upstream if up.lost is not None), None)
            after = [up for up in task.upstream if not up.ended]
        if lost is not None:
            self._job_ended(task, upstream_lost(lost))
            return
        self._launcher.start(task, after)

    # -- ends ------------------------------------------------------------------------------------------------

    def _job_ended(self, task: FileTask, end: JobEnd) -> None:
        """The launcher saw the job of ``task`` end: complete its Futures from the output file, or fail them. A
        job stopped because every Future was cancelled is started again if a Future was adopted meanwhile (the
        same call submitted again): that Future is not the cancelled one's. So is a job bound to such a job."""
        import xl_cache

        with self._lock:
            if task.ended:
                return
        outcome = None
        error: BaseException | None = None
        try:
            outcome = xl_cache.load_result(task.cache_directory, task.key)
        except Exception as problem:  # a damaged output file: say so
            error = problem
        cancelled = restart = False
        with self._lock:  # one look at the Futures: one adopted from now on sees the task ended
            if task.ended:
                return
            if outcome is None and error is None:
                upstream_lost = [up.lost for up in task.upstream if up.lost is not None]
                cancelled = any(isinstance(e, CancelledError) for e in upstream_lost) or all(
                    f.cancelled() for f in task.futures
                )
                rebound = any(up.attempt != seen for up, seen in task.bound_to)  # its afterok job was replaced
                restart = (task.stopping or rebound) and not cancelled and not upstream_lost
                if restart:
                    task.stopping, task.queue_id, task.attempt = False, None, task.attempt + 1
                    task.bound_to = ()
                else:
                    # the job's log is read only for the error that quotes it (a failure, not a cancel)
                    error = (
                        CancelledError(f"task {task.key} was cancelled") if cancelled else self._lost_error(task, end)
                    )
                    remove_input(task)  # nothing will run it: the next run submits it again
            if not restart:
                task.ended = True
                if outcome is None:
                    task.lost = error
                self._in_flight.pop((task.cache_directory, task.key), None)
                futures = list(task.futures)
                callbacks, task._end_callbacks = task._end_callbacks, []
                self._idle.notify_all()
        if restart:
            try:
                self._launch(task)
            except Exception as problem:
                self._job_ended(task, JobEnd("FAILED", f"it could not be started again: {problem!r}"))
            return
        self._delivering.depth = getattr(self._delivering, "depth", 0) + 1
        try:
            for future in futures:
                if outcome is not None:
                    value = outcome.value if outcome.status == "done" else None
                    _settle(future, result=value, error=_error_of(outcome))
                elif cancelled:  # as in the interactive executors, a cancelled upstream cancels its dependents
                    cancel_and_notify(future)
                else:
                    _settle(future, error=error)
            for callback in callbacks:
                callback(task)
        finally:
            self._delivering.depth -= 1

    def _lost_error(self, task: FileTask, end: JobEnd) -> JobFailedError:
        job = f"{self._launcher.name} job {task.queue_id}" if task.queue_id is not None else "its job"
        detail = f" ({end.detail})" if end.detail else ""
        log_file: str | None = task.log_file
        tail = log_tail(task.log_file, lines=LOG_TAIL_LINES)
        if tail:
            log = f"; the last lines of its log {task.log_file}:\n{tail}"
        elif os.path.exists(task.log_file):
            log = f"; its log is {task.log_file}"
        else:  # a local process prints to this process's stdout and stderr, as in executorlib 1.x
            log, log_file = "; its output and traceback, if any, went to this process's stdout and stderr", None
        return JobFailedError(
            f"task {task.key} ({task.label}): {job} ended {end.state}{detail} without writing "
            f"the output {task.output_file}{log}",
            state=end.state,
            queue_id=task.queue_id,
            log_file=log_file,
        )

    def _future_done(self, task: FileTask, future: Future[Any]) -> None:
        """A Future cancelled by its user: once every Future of the task is cancelled, stop its job. Futures a
        detaching shutdown cancelled leave their jobs running."""
        if not future.cancelled():
            return
        cancel_and_notify(future)  # cancel() alone leaves it uncounted by wait() and as_completed()
        with self._lock:
            if self._detached or task.ended or task.stopping or not all(f.cancelled() for f in task.futures):
                return
            task.stopping = True
        self._launcher.cancel(task)

    # -- executor surface ------------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As executorlib 1.x's file mode:

        - ``wait=False`` without ``cancel_futures`` detaches: every call already is a task file and a job (submit
          made them), the Futures whose output exists are completed from it and every other one is **cancelled
          without stopping its job**. The jobs go on and write their outputs; a later executor on the same cache
          directory gets them (or re-attaches to the jobs still running), as does ``get_future_from_cache``.
          Calls still waiting for another executor's Futures are cancelled: they never became task files.
        - ``cancel_futures`` cancels the Futures not done and stops their jobs (also after a detaching shutdown);
          ``wait`` then waits until those jobs ended.
        - ``wait=True`` waits until every job ended. From a done-callback on the thread that reports job ends it
          cannot wait (those ends would never be reported): it returns at once and the jobs finish on their own.
        """
        with self._lock:
            detached, self._detached = self._detached, self._detached or (not wait and not cancel_futures)
            if detached and not cancel_futures:
                return
            tasks = list(self._in_flight.values())
            waiting = list(self._waiting)
        if not wait and not cancel_futures:
            self._detach(tasks, waiting)
            with self._idle:
                self._closed = True
            self._launcher.close(False)
            return
        for parked in waiting:
            if cancel_futures:
                cancel_and_notify(parked.future)  # releases it, even if its upstream never completes
            else:
                parked.catch_up()  # the caller may be an earlier done-callback of its upstream
        if cancel_futures:
            for task in tasks:
                for future in list(task.futures):
                    cancel_and_notify(future)  # the done-callback stops the job
                if detached and not task.ended:  # its Futures were cancelled by the detach, its job left running
                    self._launcher.cancel(task)
        wait = wait and not getattr(self._delivering, "depth", 0)
        with self._idle:
            if wait:  # calls released meanwhile from waiting still start (the executor takes no new ones)
                self._idle.wait_for(lambda: not self._in_flight and not self._waiting)
            self._closed = True
        self._launcher.close(wait)

    def _detach(self, tasks: list[FileTask], waiting: list[Parked]) -> None:
        """Complete from the cache what is there, cancel every other Future, stop nothing."""
        import xl_cache

        for parked in waiting:
            cancel_and_notify(parked.future)
        for task in tasks:
            outcome = None
            with contextlib.suppress(Exception):  # unreadable or absent: the Future is cancelled like the others
                outcome = xl_cache.load_result(task.cache_directory, task.key)
            for future in list(task.futures):
                if outcome is None:
                    cancel_and_notify(future)
                else:
                    value = outcome.value if outcome.status == "done" else None
                    _settle(future, result=value, error=_error_of(outcome))

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not self._in_flight and not self._waiting, timeout)

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._in_flight) + len(self._waiting)

    def pending(self) -> list[Future[Any]]:
        with self._lock:
            tasks = [future for task in self._in_flight.values() for future in task.futures]
            return tasks + [parked.future for parked in self._waiting]

    def info(self) -> dict[str, Any]:
        return {"launcher": self._launcher.name, **self._launcher.info()}

    def state(self) -> SchedulerState:
        with self._lock:
            jobs = sum(1 for task in self._in_flight.values() if task.queue_id is not None)
            queued = len(self._in_flight) - jobs + len(self._waiting)
        return SchedulerState("task files", self._launcher.name, jobs, "jobs", queued)

    def job_script(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        resources: Resources,
        extras: Mapping[str, Any],
    ) -> str:
        """What ``submit`` would hand to the job launcher for this call (nothing is written or submitted)."""
        from xl_serial import function_name, task_key

        self._launcher.check(resources, extras, where="dry_run(..., resource_dict=...)")
        args, kwargs, upstream, _ = self._link_arguments(args, kwargs)
        directory = os.path.abspath(resources.cache_directory or DEFAULT_CACHE_DIRECTORY)
        key = resources.cache_key or task_key(fn, args, kwargs)
        task = FileTask(key, directory, function_name(fn), _absolute_cwd(resources), extras)
        return self._launcher.job_script(task, [up for up in upstream if not up.ended])


def _absolute_cwd(resources: Resources) -> Resources:
    """A relative ``cwd`` is the submitter's, now: the job (and the worker's chdir) gets the absolute path."""
    if not resources.cwd or os.path.isabs(resources.cwd):
        return resources
    return dataclasses.replace(resources, cwd=os.path.abspath(resources.cwd))


def _error_of(outcome: Any) -> BaseException | None:
    return outcome.value if outcome.status == "error" else None

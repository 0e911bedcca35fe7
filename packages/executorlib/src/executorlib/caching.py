"""The result cache of the interactive executors (``cache_directory``, per-task ``cache_key``).

A task whose resources name a cache directory is looked up by its key (``cache_key``, else the hash of the
function and its arguments, taken after Future arguments were replaced by their values) right before it would be
queued: a hit completes its Future from ``<key>_o.h5`` and no worker ever sees the task. On a miss the task runs
and its result is written to ``<key>_o.h5`` before its Future completes, so a later run (or a later line of the
same script) finds it. Failures are not cached, as in executorlib 1.x: a task that raised runs again next time.
The resources are not part of the key: the same call with other resources reuses the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any

from executorlib.dependencies import start_unless_cancelled
from executorlib.errors import CacheWarning, ResourceDictError
from executorlib.resources import DEFAULTS, Resources
from executorlib.status import TaskFuture

log = logging.getLogger("executorlib")

#: resource_dict keys that describe the cache, not the worker: a block-allocation pool takes them per call.
PER_CALL_KEYS = frozenset({"error_log_file", "cache_key", "cache_directory"})


def check_executor_resources(resources: Resources, *, where: str) -> None:
    """An executor-wide ``cache_key`` would give every task one key, so every task would return the first
    result: reject it where the executor is built."""
    if resources.cache_key is not None:
        raise ResourceDictError(
            f"{where}: resource_dict['cache_key'] = {resources.cache_key!r} would give every task of this executor "
            "the same cache entry (each would return the first result); pass it per call, "
            f"submit(fn, ..., resource_dict={{'cache_key': {resources.cache_key!r}}})"
        )


def task_resource_dict(resources: Resources) -> dict[str, Any]:
    """The resources a task asked for beyond the defaults, as the ``resource_dict`` dataset records them."""
    return {
        field.name: getattr(resources, field.name)
        for field in dataclasses.fields(resources)
        if getattr(resources, field.name) != getattr(DEFAULTS, field.name)
    }


class CachedFuture(TaskFuture):
    """The Future of a task with a cache directory: its first successful result is written to the cache (in the
    executor's writer thread) before the Future completes. Exceptions pass straight through, uncached."""

    _store: Callable[[Any, float | None], None] | None = None

    def set_result(self, result: Any) -> None:
        self.set_timed_result(result, None)

    def set_timed_result(self, result: Any, runtime: float | None) -> None:
        """``set_result`` with the seconds the worker spent in the function, which the cache entry records
        (None: not measured by a worker; then the time since the cache lookup is recorded instead)."""
        store, self._store = self._store, None
        if store is None:
            super().set_result(result)
            return
        store(result, runtime)

    def _finish(self, result: Any) -> None:
        # failed meanwhile (e.g. its worker was declared dead): that outcome stands
        with contextlib.suppress(InvalidStateError):
            super().set_result(result)


#: Cache directories the user was told cannot be written (once per directory and process, not per executor).
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def unwritable_reason(directory: str, problem: Exception) -> str:
    """Why ``directory`` cannot be written, in words: the OS's reason, and "a parent is a file" when the nearest
    existing ancestor is not a directory (which the OS reports as a bare "File exists" or "Not a directory")."""
    reason = problem.strerror if isinstance(problem, OSError) and problem.strerror else repr(problem)
    if isinstance(problem, OSError) and problem.filename is not None and problem.filename != directory:
        reason += f": {problem.filename}"
    ancestor = os.path.abspath(directory)
    while not os.path.lexists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if os.path.lexists(ancestor) and not os.path.isdir(ancestor):
        reason += f"; a parent is a file, not a directory: {ancestor}"
    return reason


class ResultCache:
    """Looks tasks up before they are queued and writes results in one background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._writer_thread: threading.Thread | None = None

    def serve(self, fn: Callable[..., Any], args: Any, kwargs: Any, resources: Resources, future: Future[Any]) -> bool:
        """Complete ``future`` from the cache and return True (a hit, or an unreadable entry, which fails it);
        on a miss arrange for the result to be written and return False."""
        from xl_cache import load_result
        from xl_serial import task_key

        directory = resources.cache_directory
        assert directory is not None
        try:
            key = resources.cache_key or task_key(fn, args, kwargs)
            if isinstance(future, TaskFuture):
                future.cache_key = key
            outcome = load_result(directory, key)
        except Exception as problem:  # a damaged entry (CacheError), or arguments that cannot be pickled
            if start_unless_cancelled(future):
                future.set_exception(problem)
            return True
        if outcome is not None:
            if start_unless_cancelled(future):
                if outcome.status == "done":
                    Future.set_result(future, outcome.value)
                else:  # written by a file-mode worker sharing this directory
                    future.set_exception(outcome.value)
            return True
        if isinstance(future, CachedFuture):
            looked_up = time.perf_counter()

            def store(result: Any, runtime: float | None) -> None:
                # the worker's measure of the function (1.x's runtime); worker start-up and the wire are not in it
                spent = time.perf_counter() - looked_up if runtime is None else runtime
                self._submit(lambda: self._write(future, directory, key, fn, args, kwargs, resources, result, spent))

            future._store = store
        return False

    def _write(
        self,
        future: CachedFuture,
        directory: str,
        key: str,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        resources: Resources,
        result: Any,
        runtime: float,
    ) -> None:
        from xl_cache import write_output

        try:
            write_output(
                directory,
                key,
                fn,
                args,
                kwargs,
                output=result,
                runtime=runtime,
                resource_dict=task_resource_dict(resources),
                error_log_file=resources.error_log_file,
            )
        except Exception as problem:  # the result still reaches its Future; only the cache misses it
            log.debug("could not write the result of %s to the cache %s: %r", key, directory, problem)
            self._warn_unwritable(directory, problem)
        finally:
            future._finish(result)

    def _warn_unwritable(self, directory: str, problem: Exception) -> None:
        """Say once per directory (in this process) that results are not being kept: a cache that silently keeps
        nothing would make the next run recompute everything."""
        with _WARNED_LOCK:
            if directory in _WARNED:
                return
            _WARNED.add(directory)
        warnings.warn(
            f"results are not cached: cannot write to the cache directory {directory!r} "
            f"({unwritable_reason(directory, problem)}). The results are still returned, but none is stored, so a "
            "later run computes them again; make the directory writable, or pass a cache_directory you can write to",
            CacheWarning,
            stacklevel=2,  # the writer thread has no user frame: point at the write that failed
        )

    def _submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(
                    1, thread_name_prefix="executorlib-cache-writer", initializer=self._mark_writer_thread
                )
            writer = self._writer
        try:
            writer.submit(job)
        except RuntimeError:  # the writer is shut down (or the interpreter is exiting): write here
            job()

    def _mark_writer_thread(self) -> None:
        self._writer_thread = threading.current_thread()

    def in_writer_thread(self) -> bool:
        """Whether the caller is the writer thread, e.g. a done-callback of a Future it completed."""
        return self._writer_thread is threading.current_thread()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the writer thread once the writes already handed to it are done (when ``wait``). On the writer
        thread itself (shutdown from a done-callback) it cannot wait for itself: it finishes those writes after
        the callback returns, then ends."""
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.shutdown(wait=wait and not self.in_writer_thread())

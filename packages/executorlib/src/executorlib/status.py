"""What an executor and its Futures show in a terminal (``repr``) and in Jupyter (``_repr_html_``).

``TaskFuture`` is the Future every executor returns for a call that runs: it knows its function, its cache key
and, in file mode, its job. ``TaskTally`` counts an executor's tasks as they finish (a done-callback each, no
polling). The texts and tables are made by pure functions of typed snapshots (``ExecutorStatus``,
``FutureStatus``), so they are tested without processes.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import FINISHED
from dataclasses import dataclass
from typing import Any, Protocol

from xl_comm import AssistedFuture
from xl_serial import function_name

__all__ = [
    "ExecutorStatus",
    "FutureStatus",
    "SchedulerState",
    "TaskFuture",
    "TaskTally",
    "executor_html",
    "executor_text",
    "future_html",
    "future_text",
]


@dataclass(frozen=True)
class SchedulerState:
    """A scheduler's side of an executor's status (``Scheduler.state()``)."""

    #: how tasks run: "a worker per call", "a pool of 2 workers", "task files", "graph mode (nothing runs)"
    mode: str
    #: what starts workers or jobs: the launcher's class or the resource manager's name
    launcher: str
    #: worker processes (or jobs, see ``unit``) alive now; None where there are none to count
    alive: int | None
    #: "workers" or "jobs"
    unit: str
    #: calls accepted and not yet given to a worker or a job
    queued: int


@dataclass(frozen=True)
class ExecutorStatus:
    """A snapshot of an executor for its ``repr``. ``running`` is what was submitted and is neither finished nor
    queued: in file mode that includes jobs still pending in the resource manager's queue."""

    executor: str
    scheduler: SchedulerState
    queued: int
    running: int
    done: int
    failed: int
    cancelled: int
    cache_directory: str | None
    shut_down: bool


@dataclass(frozen=True)
class FutureStatus:
    """A snapshot of one Future for its ``repr``: ``state`` is the stdlib's word (pending, running, cancelled,
    finished); ``outcome`` names the result's type or the exception once finished."""

    kind: str
    address: int
    function: str | None
    state: str
    outcome: str | None
    cache_key: str | None
    job_id: int | None


class TaskTally:
    """Counts the tasks of one executor by outcome. Thread-safe: Futures finish on the hub's thread, the cache
    writer, a waiting caller or the submitter.

    A Future is counted by its done-callback, or by ``snapshot`` if that comes first: a caller woken by
    ``result()`` may look before the completing thread has run the callbacks, and must not see the task as
    still running. Unfinished Futures are held here until then (their scheduler holds them anyway). This runs
    for every task, so it reads the Future's state fields directly instead of through its lock (as
    ``dependencies.cancel_and_notify`` does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Future[Any]] = set()
        self._done = 0
        self._failed = 0
        self._cancelled = 0
        self._callback = self._finished  # one bound method, not one per task

    def add(self, future: Future[Any]) -> None:
        """Count ``future``, which nobody else can see yet (so its callbacks list is appended to directly, and
        one set insertion needs no lock)."""
        self._open.add(future)
        future._done_callbacks.append(self._callback)  # type: ignore[attr-defined]

    def _finished(self, future: Future[Any]) -> None:
        with self._lock:
            self._count(future)

    def _count(self, future: Future[Any]) -> None:
        try:
            self._open.remove(future)
        except KeyError:
            return  # counted already
        if future._state != FINISHED:
            self._cancelled += 1
        elif future._exception is None:
            self._done += 1
        else:
            self._failed += 1

    def snapshot(self) -> tuple[int, int, int, int]:
        """(submitted, done, failed, cancelled), read together, every Future that is done by now counted."""
        with self._lock:
            for future in [future for future in self._open if future.done()]:
                self._count(future)
            submitted = len(self._open) + self._done + self._failed + self._cancelled
            return submitted, self._done, self._failed, self._cancelled


class QueuedJob(Protocol):
    """What a Future's job shows: its task file's key, and its id in the resource manager once submitted (a
    file-mode FileTask)."""

    key: str
    queue_id: int | None


class TaskFuture(AssistedFuture):
    """The Future of a submitted call: a stdlib Future (``result()`` helps the hub while it waits) whose ``repr``
    names the function, the cache key and, in file mode, the job id."""

    #: the cache key, once the call was looked up in a cache directory (or given as resource_dict["cache_key"])
    cache_key: str | None = None
    #: file mode: the task file's job, whose queue id is known once submitted
    job: QueuedJob | None = None

    def __init__(self, fn: Callable[..., Any] | None = None, tally: TaskTally | None = None) -> None:
        super().__init__()
        self.fn = fn
        if tally is not None:
            tally.add(self)

    def status(self) -> FutureStatus:
        """A snapshot of this Future (see :class:`FutureStatus`)."""
        outcome = None
        if self.cancelled():
            state = "cancelled"
        elif self.done():
            state = "finished"
            exception = Future.exception(self, 0)  # the stdlib's: done, so no waiting and no help to offer
            if exception is not None:
                outcome = f"raised {type(exception).__name__}"
            else:
                outcome = f"returned {type(Future.result(self, 0)).__name__}"
        else:
            state = "running" if self.running() else "pending"
        job = self.job
        key = self.cache_key if self.cache_key is not None or job is None else job.key
        return FutureStatus(
            kind=type(self).__name__,
            address=id(self),
            function=function_name(self.fn) if self.fn is not None else None,
            state=state,
            outcome=outcome,
            cache_key=key,
            job_id=job.queue_id if job is not None else None,
        )

    def __repr__(self) -> str:
        return future_text(self.status())

    def _repr_html_(self) -> str:
        return future_html(self.status())


# -- pure renderers ----------------------------------------------------------------------------------------------


def future_text(status: FutureStatus) -> str:
    """``<TaskFuture of add at 0x7f.. state=finished returned int cache_key='add_1f2e' job_id=17>``"""
    parts = [f"<{status.kind}"]
    if status.function is not None:
        parts.append(f"of {status.function}")
    parts.append(f"at {status.address:#x} state={status.state}")
    if status.outcome is not None:
        parts.append(status.outcome)
    if status.cache_key is not None:
        parts.append(f"cache_key={status.cache_key!r}")
    if status.job_id is not None:
        parts.append(f"job_id={status.job_id}")
    return " ".join(parts) + ">"


def future_html(status: FutureStatus) -> str:
    rows = [("function", status.function), ("state", status.state), ("outcome", status.outcome)]
    rows += [("cache key", status.cache_key), ("job id", None if status.job_id is None else str(status.job_id))]
    return _table(status.kind, [(name, value) for name, value in rows if value is not None])


def executor_text(status: ExecutorStatus) -> str:
    """One line: ``<SingleNodeExecutor a pool of 2 workers (LocalLauncher), 2 workers alive; tasks: 0 queued,
    1 running, 5 done, 0 failed, 0 cancelled; cache_directory='./cache'>``"""
    state = status.scheduler
    alive = f", {_count_of(state.alive, state.unit)} alive" if state.alive is not None else ""
    shut = ", shut down" if status.shut_down else ""
    cache = f"; cache_directory={status.cache_directory!r}" if status.cache_directory is not None else ""
    return (
        f"<{status.executor} {state.mode} ({state.launcher}){alive}{shut}; tasks: {status.queued} queued, "
        f"{status.running} running, {status.done} done, {status.failed} failed, {status.cancelled} cancelled{cache}>"
    )


def executor_html(status: ExecutorStatus) -> str:
    state = status.scheduler
    rows: list[tuple[str, str]] = [("scheduler", state.mode), ("launcher", state.launcher)]
    if state.alive is not None:
        rows.append((f"{state.unit} alive", str(state.alive)))
    rows += [
        (
            "tasks",
            f"{status.queued} queued, {status.running} running, {status.done} done, "
            f"{status.failed} failed, {status.cancelled} cancelled",
        ),
        ("cache directory", status.cache_directory if status.cache_directory is not None else "none"),
    ]
    if status.shut_down:
        rows.append(("state", "shut down"))
    return _table(status.executor, rows)


def _count_of(number: int, unit: str) -> str:
    """``1 worker``, ``2 workers``: ``unit`` is the plural."""
    return f"{number} {unit if number != 1 else unit.removesuffix('s')}"


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    """A small two-column table; every text is escaped, so any function name or path is shown as it is."""
    cells = "".join(
        f'<tr><th style="text-align:left">{html.escape(name)}</th><td style="text-align:left">{html.escape(value)}'
        "</td></tr>"
        for name, value in rows
    )
    return f"<div><strong>{html.escape(title)}</strong><table>{cells}</table></div>"

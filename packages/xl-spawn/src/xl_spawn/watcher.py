"""The one batch-queue watcher: one thread asks about *all* watched jobs in one status query.

It watches SLURM (:class:`xl_spawn.SlurmQueue`) and Flux (:class:`xl_spawn.FluxBatchQueue`) jobs alike. A batch
scheduler offers no events, so its queue is the one place that is polled, on a schedule that grows: the
query interval starts at ``MIN_INTERVAL`` when the watcher starts watching (or on :meth:`QueueWatcher.hurry`, or
after a job died, which may take its dependents along) and grows by ``GROWTH`` to ``MAX_QUERY_INTERVAL``; it does
*not* fall back when jobs complete, so a steady stream of finished jobs costs few queries. A job may also carry a
cheap sign of its end (its output file appeared: a stat, no query), looked at on a faster schedule that starts
again at ``MIN_INTERVAL`` after every submission or end and grows to ``MAX_INTERVAL``.

A job's end reaches its ``on_end`` callback (on the watcher thread) exactly once, as a :class:`JobEnd`:
``COMPLETED`` when its sign showed; SLURM's final state and reason when it failed; ``CANCELLED`` when it waited on
a dependency that can never be satisfied (it is cancelled, so nothing waits forever); and, for a job SLURM
reports COMPLETED or no longer knows, that state once its sign did not show within ``OUTPUT_GRACE_POLLS`` more
queries (shared file systems lag), at once for a job without a sign.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from xl_spawn.batch import JobState

__all__ = [
    "GROWTH",
    "MAX_INTERVAL",
    "MAX_QUERY_INTERVAL",
    "MIN_INTERVAL",
    "OUTPUT_GRACE_POLLS",
    "JobEnd",
    "JobStates",
    "QueueWatcher",
]

MIN_INTERVAL = 0.25
#: The longest wait between two looks at the jobs' signs (output files).
MAX_INTERVAL = 3.0
#: The longest wait between two status queries: a dead job's end is reported within this (plus one query).
MAX_QUERY_INTERVAL = 3.0
GROWTH = 1.5
#: Status queries a finished job may go without its sign before it counts as lost (shared file systems).
OUTPUT_GRACE_POLLS = 3


class JobStates(Protocol):
    """What the watcher needs of a queue (:class:`xl_spawn.SlurmQueue` and :class:`xl_spawn.FluxBatchQueue` have
    both): states named as SLURM spells them (``COMPLETED``, ``FAILED``, ``CANCELLED``, ``TIMEOUT``, ...)."""

    def states(self, job_ids: Sequence[int]) -> Mapping[int, JobState]: ...

    def cancel(self, job_ids: Sequence[int]) -> None: ...


@dataclass(frozen=True)
class JobEnd:
    """How a watched job ended: ``state`` (``COMPLETED``, ``TIMEOUT``, ``UNKNOWN``, ...) and a detail (SLURM's
    reason, or why the watcher decided)."""

    state: str
    detail: str = ""


@dataclass
class _Watched:
    on_end: Callable[[JobEnd], None]
    done: Callable[[], bool] | None
    misses: int = field(default=0)


def judge(state: JobState | None, *, has_sign: bool, misses: int) -> JobEnd | None:
    """The end a status query shows for a job still watched (its sign, if any, not seen), or None: wait on.
    ``misses`` counts the queries before this one that found the job COMPLETED or unknown without its sign."""
    if state is not None and state.never_runs:
        return JobEnd("CANCELLED", "an upstream job failed (DependencyNeverSatisfied)")
    if state is not None and state.final and state.state != "COMPLETED":
        return JobEnd(state.state, state.reason if state.reason not in ("", "None") else "")
    if state is None or state.final:  # COMPLETED, or forgotten
        if has_sign and misses + 1 <= OUTPUT_GRACE_POLLS:
            return None
        if state is None:
            return JobEnd("UNKNOWN", "the batch system no longer knows the job")
        return JobEnd(state.state)
    return None


class QueueWatcher:
    """Watches batch jobs with one status query for all of them; see the module docstring. The thread runs
    while jobs are watched and starts again with the next :meth:`watch`."""

    #: The longest wait between two status queries: an end is reported within this plus one query.
    MAX_LATENCY = MAX_QUERY_INTERVAL

    def __init__(self, queue: JobStates, *, name: str = "xl-spawn-queue-watcher") -> None:
        self.queue = queue
        self.name = name
        self.queries = 0  # status queries made, for benchmarks and tests
        self._cond = threading.Condition()
        self._jobs: dict[int, _Watched] = {}
        self._thread: threading.Thread | None = None
        self._interval = MIN_INTERVAL
        self._query_interval = MIN_INTERVAL
        self._next_query = 0.0  # time.monotonic() of the next status query

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def watch(self, job: int, on_end: Callable[[JobEnd], None], *, done: Callable[[], bool] | None = None) -> None:
        """Report the end of ``job`` to ``on_end`` once. ``done`` is a cheap sign that it finished (e.g. its
        output file exists), looked at more often than the queue is asked."""
        with self._cond:
            if not self._jobs:  # nothing was watched: start the query schedule afresh
                self._query_soon()
            self._jobs[job] = _Watched(on_end, done)
            self._interval = MIN_INTERVAL
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def hurry(self) -> None:
        """Something changed (a job was cancelled or submitted): ask the queue again soon."""
        with self._cond:
            self._interval = MIN_INTERVAL
            if self._jobs:
                self._query_soon()
            self._cond.notify_all()

    def _query_soon(self) -> None:
        """Restart the query schedule at its minimum (called with ``self._cond`` held)."""
        soon = time.monotonic() + MIN_INTERVAL
        self._query_interval = MIN_INTERVAL
        self._next_query = min(self._next_query, soon) if self._jobs else soon

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    self._thread = None
                    return
                self._cond.wait(max(0.0, min(self._interval, self._next_query - time.monotonic())))
                jobs = dict(self._jobs)
                self._interval = min(self._interval * GROWTH, MAX_INTERVAL)
                now = time.monotonic()
                query = now >= self._next_query
                if query:
                    self._query_interval = min(self._query_interval * GROWTH, MAX_QUERY_INTERVAL)
                    self._next_query = now + self._query_interval
            if not jobs:
                continue
            ended, died = self._check(jobs, query)
            if ended:
                with self._cond:
                    for job in ended:
                        self._jobs.pop(job, None)
                    self._interval = MIN_INTERVAL  # more ends may follow: keep looking at the signs
                    if died and self._jobs:  # its dependents are cancelled by SLURM next: ask again soon
                        self._query_soon()

    def _check(self, jobs: dict[int, _Watched], query: bool) -> tuple[list[int], bool]:
        """The jobs that ended (their sign showed or, when ``query``, the queue reports their end), and whether
        one of them ended without its sign."""
        ended: list[int] = []
        for job, watched in jobs.items():  # a stat each: finished jobs need no query
            if watched.done is not None and watched.done():
                ended.append(job)
                watched.on_end(JobEnd("COMPLETED"))
        rest = [job for job in jobs if job not in ended]
        if not rest or not query:
            return ended, False
        try:
            self.queries += 1
            states = self.queue.states(rest)
        except Exception:  # the controller is down or slow: ask again next time
            return ended, False
        signed = len(ended)
        for job in rest:
            watched = jobs[job]
            state = states.get(job)
            end = judge(state, has_sign=watched.done is not None, misses=watched.misses)
            if end is None:
                if state is None or state.final:
                    watched.misses += 1
                continue
            if state is not None and state.never_runs:
                with contextlib.suppress(Exception):  # gone already: its end is reported all the same
                    self.queue.cancel([job])
            ended.append(job)
            watched.on_end(end)
        return ended, len(ended) > signed

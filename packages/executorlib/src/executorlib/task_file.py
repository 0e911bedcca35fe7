"""A task file and its job: the record the file-mode scheduler and its job launchers share.

A call becomes ``<cache>/<key>_i.h5`` (xl-cache); a job runs it and writes ``<key>_o.h5``. A batch job runs in its
working directory, ``abspath(cwd)`` when the call names one (resolved when it was submitted), else
``<cache>/<key>/``, where its script and its log go. A local process records its pid in ``<cache>/<key>/queue_id``
while it runs (for re-attachment); that folder is removed once the output exists.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from xl_cache import QUEUE_ID_FILE_NAME
from xl_spawn import JOB_LOG_NAME

from executorlib.resources import Resources


@dataclass(frozen=True)
class JobEnd:
    """How a job ended, as its job launcher saw it: ``state`` (e.g. ``COMPLETED``, ``TIMEOUT``, ``exit status 1``)
    and an optional detail (e.g. SLURM's reason ``DependencyNeverSatisfied``)."""

    state: str
    detail: str = ""


@dataclass(eq=False)
class FileTask:
    """One task file and the job that runs it."""

    key: str
    cache_directory: str
    label: str
    resources: Resources
    extras: Mapping[str, Any]
    futures: list[Future[Any]] = field(default_factory=list)
    upstream: list[FileTask] = field(default_factory=list)
    queue_id: int | None = None
    ended: bool = False
    lost: BaseException | None = None
    """Set when the task ended without output (its job died, or an upstream job did)."""
    stopping: bool = False
    """Every Future was cancelled and its job is being stopped; a Future adopted meanwhile starts it again."""
    attempt: int = 0
    """How many times the job was started again (for a Future adopted while it was stopped): a launcher's
    callback of an earlier start sees the change and does nothing."""
    bound_to: tuple[tuple[FileTask, int], ...] = ()
    """The upstream tasks whose jobs this task's job names as its dependencies (a batch job's ``afterok``), each
    with its ``attempt`` then: if one was started again since, this job never runs and is started again too."""
    input_identity: tuple[int, int] | None = None
    """(inode, mtime) of the task file this task wrote or re-attached to (see :func:`remove_input`)."""
    job_log: str | None = None
    """The job's log when its job launcher keeps one elsewhere than a batch job's ``time.out`` (a local
    process's copy of its stderr in its job directory)."""
    _end_callbacks: list[Callable[[FileTask], None]] = field(default_factory=list)

    @property
    def input_file(self) -> str:
        return os.path.join(self.cache_directory, f"{self.key}_i.h5")

    @property
    def output_file(self) -> str:
        return os.path.join(self.cache_directory, f"{self.key}_o.h5")

    @property
    def job_directory(self) -> str:
        """``<cache>/<key>/``: the job's own folder (a batch job's working directory unless the call names a
        ``cwd``; a local process's pid file)."""
        return os.path.join(self.cache_directory, self.key)

    @property
    def working_directory(self) -> str:
        """Where a batch job runs and writes its script and log: the call's ``cwd`` (made absolute at submit
        time), else the job directory."""
        return os.fspath(self.resources.cwd) if self.resources.cwd else self.job_directory

    @property
    def log_file(self) -> str:
        """The job's log, whose tail a job that ended without output is reported with."""
        return self.job_log or os.path.join(self.working_directory, JOB_LOG_NAME)

    @property
    def queue_id_file(self) -> str:
        """``<cache>/<key>/queue_id``: the job id as text, for job launchers that record it beside the task file
        instead of rewriting it (see :func:`xl_cache.write_queue_id_file`)."""
        return os.path.join(self.job_directory, QUEUE_ID_FILE_NAME)

    def when_ended(self, callback: Callable[[FileTask], None], lock: threading.Lock) -> None:
        """Call ``callback(task)`` once the task ended (now, if it has)."""
        with lock:
            if not self.ended:
                self._end_callbacks.append(callback)
                return
        callback(self)


def upstream_lost(upstream: FileTask) -> JobEnd:
    """The end of a job that never runs because ``upstream`` ended without output (as SLURM cancels an afterok
    job whose upstream job failed)."""
    return JobEnd("CANCELLED", f"its upstream task {upstream.key} ended without output")


def note_input(task: FileTask) -> None:
    """Remember the task file as this task's, after this process wrote it (every write replaces the file)."""
    try:
        stat = os.stat(task.input_file)
    except OSError:
        task.input_identity = None
        return
    task.input_identity = (stat.st_ino, stat.st_mtime_ns)


def remove_input(task: FileTask) -> None:
    """Remove the task file of a task that ended without output (nothing will run it), unless it is no longer
    this task's: an executor that submitted the same call since, on the same cache directory, wrote its own
    (a new file), which its job is about to read."""
    try:
        stat = os.stat(task.input_file)
    except FileNotFoundError:
        return
    if task.input_identity != (stat.st_ino, stat.st_mtime_ns):
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(task.input_file)


def record_queue_id(task: FileTask) -> None:
    """Write the job id into the pending task file, without racing the job: if the job already finished (its
    output exists), a task file rewritten here would read as pending forever, so it is removed again."""
    import xl_cache

    assert task.queue_id is not None
    if os.path.exists(task.output_file):
        return
    try:
        xl_cache.record_queue_id(task.cache_directory, task.key, task.queue_id)
    except FileNotFoundError:
        return  # the job ran already and removed it
    except Exception:  # the id is a convenience (get_cache_data, re-attachment); the job runs regardless
        return
    note_input(task)
    if os.path.exists(task.output_file):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(task.input_file)

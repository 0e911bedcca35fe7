"""TaskFileScheduler against a scripted job launcher: the test decides when each job ends and how.

Real task files (xl-cache, HDF5) in a temporary directory; a job "runs" by ``xl_cache.worker.run_task_file`` in this
process. What is checked: a job stopped because its only Future was cancelled is started again when the same call
was submitted meanwhile (the new Future gets the result, not the cancellation), a batch job bound to a replaced
job is started again too, a call linked to an upstream that ended without output starts no job, and a cancelled
Future counts as done for ``wait()`` whatever its job does, and a stopped job leaves alone the task file another
executor wrote since for the same call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, wait
from pathlib import Path
from typing import Any

import pytest
from executorlib.errors import JobFailedError
from executorlib.resources import Resources
from executorlib.schedulers.task_files import TaskFileScheduler
from executorlib.task_file import FileTask, JobEnd

TIMEOUT = 10


def add(a: int, b: int) -> int:
    return a + b


class ScriptedLauncher:
    """Starts nothing: records each start and cancel, and ends a job when the test says so. Binds a job to the
    jobs of ``after`` as a batch launcher's ``afterok`` does (``FileTask.bound_to``)."""

    name = "scripted"

    def __init__(self) -> None:
        self.started: list[tuple[FileTask, int, list[FileTask]]] = []
        self.cancelled: list[int | None] = []
        self._next_id = 100
        self._on_end: Callable[[FileTask, JobEnd], None] | None = None

    def bind(self, on_end: Callable[[FileTask, JobEnd], None], lock: threading.Lock) -> None:
        self._on_end = on_end

    def check(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        return None

    def start(self, task: FileTask, after: Sequence[FileTask]) -> None:
        self._next_id += 1
        task.queue_id = self._next_id
        task.bound_to = tuple((up, up.attempt) for up in after if up.queue_id is not None)
        self.started.append((task, self._next_id, list(after)))

    def job_script(self, task: FileTask, after: Sequence[FileTask]) -> str:
        return ""

    def attach(self, task: FileTask) -> bool:
        return False

    def cancel(self, task: FileTask) -> None:
        self.cancelled.append(task.queue_id)

    def close(self, wait: bool) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {}

    def run(self, task: FileTask) -> None:
        """The job runs the task file and ends."""
        from xl_cache.worker import run_task_file

        run_task_file(task.input_file)
        self.end(task, "COMPLETED")

    def end(self, task: FileTask, state: str, detail: str = "") -> None:
        assert self._on_end is not None
        self._on_end(task, JobEnd(state, detail))


@pytest.fixture
def launcher() -> ScriptedLauncher:
    return ScriptedLauncher()


@pytest.fixture
def scheduler(launcher: ScriptedLauncher) -> Iterator[TaskFileScheduler]:
    scheduler = TaskFileScheduler(launcher)
    yield scheduler
    scheduler.shutdown(wait=False, cancel_futures=True)


def submit(scheduler: TaskFileScheduler, cache: Path, fn: Callable[..., Any], *args: Any) -> Future[Any]:
    future: Future[Any] = Future()
    scheduler.submit(fn, args, {}, Resources(cache_directory=str(cache)), {}, future)
    return future


def submit_and_cancel(
    scheduler: TaskFileScheduler, launcher: ScriptedLauncher, cache: Path, *args: Any
) -> tuple[Future[Any], FileTask]:
    """``add(*args)`` submitted, its job started, its Future cancelled: the task, whose job is being stopped."""
    future = submit(scheduler, cache, add, *args)
    task = launcher.started[-1][0]
    assert future.cancel()
    return future, task


def test_the_same_call_submitted_while_its_job_is_stopped_starts_it_again(
    scheduler: TaskFileScheduler, launcher: ScriptedLauncher, tmp_path: Path
) -> None:
    first = submit(scheduler, tmp_path, add, 1, 2)
    [(task, job, _)] = launcher.started
    assert first.cancel()
    assert launcher.cancelled == [job]  # its only Future was cancelled: the job is stopped
    assert not wait([first], timeout=0).not_done
    again = submit(scheduler, tmp_path, add, 1, 2)  # the same call, before the stopped job's end is seen
    assert len(launcher.started) == 1  # it shares the job being stopped
    launcher.end(task, "CANCELLED")
    assert not again.done()  # not cancelled with the first one: its job is started again
    [_, (restarted, second_job, _)] = launcher.started
    assert restarted is task and second_job != job and task.attempt == 1
    assert (tmp_path / f"{task.key}_i.h5").exists()  # the task file stays for the new job
    launcher.run(task)
    assert again.result(timeout=TIMEOUT) == 3 and first.cancelled()
    assert not wait([first, again], timeout=0).not_done


def test_a_cancelled_future_whose_job_completes_anyway_counts_as_done(
    scheduler: TaskFileScheduler, launcher: ScriptedLauncher, tmp_path: Path
) -> None:
    future, task = submit_and_cancel(scheduler, launcher, tmp_path, 1, 2)
    launcher.run(task)  # the stop came too late: the output is written
    assert future.cancelled() and not wait([future], timeout=0).not_done
    assert (tmp_path / f"{task.key}_o.h5").exists()  # the result stays cached for the next call


def test_a_job_stopped_for_good_removes_its_task_file_and_cancels_its_dependents(
    scheduler: TaskFileScheduler, launcher: ScriptedLauncher, tmp_path: Path
) -> None:
    first = submit(scheduler, tmp_path, add, 1, 2)
    dependent = submit(scheduler, tmp_path, add, first, 1)
    task = launcher.started[0][0]
    assert first.cancel()
    launcher.end(task, "CANCELLED")
    assert len(launcher.started) == 2 and not (tmp_path / f"{task.key}_i.h5").exists()
    launcher.end(launcher.started[1][0], "CANCELLED", "an upstream job failed (DependencyNeverSatisfied)")
    with pytest.raises(CancelledError):
        dependent.result(timeout=TIMEOUT)


def test_a_job_bound_to_a_replaced_job_is_started_again(
    scheduler: TaskFileScheduler, launcher: ScriptedLauncher, tmp_path: Path
) -> None:
    _, upstream = submit_and_cancel(scheduler, launcher, tmp_path, 1, 2)
    again = submit(scheduler, tmp_path, add, 1, 2)
    dependent = submit(scheduler, tmp_path, add, again, 10)  # bound (afterok) to the job being stopped
    [_, (task, _, after)] = launcher.started
    assert after == [upstream] and task.bound_to == ((upstream, 0),)
    launcher.end(upstream, "CANCELLED")  # upstream started again: attempt 1
    launcher.end(task, "CANCELLED", "an upstream job failed (DependencyNeverSatisfied)")
    assert not dependent.done()
    assert [(t, a) for t, _, a in launcher.started[2:]] == [(upstream, []), (task, [upstream])]
    assert task.bound_to == ((upstream, 1),)
    launcher.run(upstream)
    launcher.run(task)
    assert again.result(timeout=TIMEOUT) == 3 and dependent.result(timeout=TIMEOUT) == 13


def test_a_job_that_dies_on_its_own_is_not_started_again(
    scheduler: TaskFileScheduler, launcher: ScriptedLauncher, tmp_path: Path
) -> None:
    future = submit(scheduler, tmp_path, add, 1, 2)
    task = launcher.started[0][0]
    launcher.end(task, "FAILED")
    assert isinstance(future.exception(timeout=TIMEOUT), JobFailedError) and len(launcher.started) == 1


def test_a_call_linked_to_an_upstream_that_ended_without_output_starts_no_job(
    scheduler: TaskFileScheduler, launcher: ScriptedLauncher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream_future = submit(scheduler, tmp_path, add, 1, 2)
    upstream = launcher.started[0][0]
    original = TaskFileScheduler._link_arguments

    def link_then_upstream_dies(self: TaskFileScheduler, args: Any, kwargs: Any) -> Any:
        linked = original(self, args, kwargs)  # linked to the upstream while it ran ...
        launcher.end(upstream, "FAILED")  # ... which ends without output before the job is started
        return linked

    monkeypatch.setattr(TaskFileScheduler, "_link_arguments", link_then_upstream_dies)
    dependent = submit(scheduler, tmp_path, add, upstream_future, 1)
    assert len(launcher.started) == 1  # no job for the dependent: it could only fail on the missing input
    assert isinstance(upstream_future.exception(timeout=TIMEOUT), JobFailedError)
    error = dependent.exception(timeout=TIMEOUT)
    assert isinstance(error, JobFailedError) and f"its upstream task {upstream.key}" in str(error)
    assert not list(tmp_path.glob("*_i.h5"))


def test_a_stopped_job_leaves_the_task_file_another_executor_wrote_since(tmp_path: Path) -> None:
    old_launcher, new_launcher = ScriptedLauncher(), ScriptedLauncher()
    old, new = TaskFileScheduler(old_launcher), TaskFileScheduler(new_launcher)
    try:
        cancelled = submit(old, tmp_path, add, 1, 2)
        assert cancelled.cancel()  # its job is being stopped ...
        again = submit(new, tmp_path, add, 1, 2)  # ... when a new executor submits the same call: its own file
        old_launcher.end(old_launcher.started[0][0], "CANCELLED")
        task = new_launcher.started[0][0]
        assert (tmp_path / f"{task.key}_i.h5").exists()  # the new job needs it
        new_launcher.run(task)
        assert again.result(timeout=TIMEOUT) == 3
    finally:
        old.shutdown(wait=False, cancel_futures=True)
        new.shutdown(wait=False, cancel_futures=True)

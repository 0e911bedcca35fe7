"""The one batch-queue watcher: its pure verdict (property tests) and its thread against an in-memory queue."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import JobEnd, JobState, QueueWatcher, pid_runs
from xl_spawn.sbatch import FINAL_STATES
from xl_spawn.watcher import OUTPUT_GRACE_POLLS, judge

states = st.none() | st.builds(
    JobState,
    st.sampled_from(sorted(FINAL_STATES | {"PENDING", "RUNNING", "COMPLETING"})),
    st.sampled_from(["", "None", "Dependency", "DependencyNeverSatisfied", "TimeLimit"]),
)


@given(states, st.booleans(), st.integers(0, 10))
def test_a_verdict_only_for_jobs_that_cannot_run_on(state: JobState | None, has_sign: bool, misses: int) -> None:
    end = judge(state, has_sign=has_sign, misses=misses)
    if state is not None and not state.final and not state.never_runs:
        assert end is None  # queued or running: wait on
    elif state is not None and state.never_runs:
        assert end == JobEnd("CANCELLED", "an upstream job failed (DependencyNeverSatisfied)")
    elif state is not None and state.state != "COMPLETED":
        assert end is not None and end.state == state.state and end.detail != "None"
    elif has_sign and misses < OUTPUT_GRACE_POLLS:
        assert end is None  # its output may still be on its way through a shared file system
    else:
        assert end is not None and end.state == (state.state if state is not None else "UNKNOWN")


class FakeQueue:
    """In-memory job states; every states() call is counted, cancel() marks jobs CANCELLED."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobState] = {}
        self.calls: list[list[int]] = []
        self.cancelled: list[int] = []

    def states(self, job_ids: Sequence[int]) -> Mapping[int, JobState]:
        self.calls.append(list(job_ids))
        return {job: self.jobs[job] for job in job_ids if job in self.jobs}

    def cancel(self, job_ids: Sequence[int]) -> None:
        for job in job_ids:
            self.cancelled.append(job)
            self.jobs[job] = JobState("CANCELLED")


class Ends:
    def __init__(self, expected: int) -> None:
        self.ends: dict[int, JobEnd] = {}
        self._lock = threading.Lock()
        self._all = threading.Event()
        self._expected = expected

    def callback(self, job: int):  # type: ignore[no-untyped-def]
        def on_end(end: JobEnd) -> None:
            with self._lock:
                assert job not in self.ends, f"job {job} ended twice"
                self.ends[job] = end
                if len(self.ends) == self._expected:
                    self._all.set()

        return on_end

    def wait(self) -> None:
        assert self._all.wait(30), f"ends seen: {self.ends}"


@pytest.mark.timeout(60)
def test_one_query_asks_about_every_job_and_each_end_is_reported_once() -> None:
    queue = FakeQueue()
    queue.jobs = {1: JobState("RUNNING"), 2: JobState("PENDING", "Dependency"), 3: JobState("RUNNING")}
    watcher = QueueWatcher(queue)
    ends = Ends(3)
    for job in (1, 2, 3):
        watcher.watch(job, ends.callback(job))
    queue.jobs = {
        1: JobState("TIMEOUT", "None"),
        2: JobState("PENDING", "DependencyNeverSatisfied"),
        3: JobState("COMPLETED"),
    }
    watcher.hurry()
    ends.wait()
    assert ends.ends == {
        1: JobEnd("TIMEOUT"),
        2: JobEnd("CANCELLED", "an upstream job failed (DependencyNeverSatisfied)"),
        3: JobEnd("COMPLETED"),
    }
    assert queue.cancelled == [2]  # pending forever otherwise
    assert all(sorted(call) == [1, 2, 3] for call in queue.calls[:1])  # one query for all jobs
    assert watcher.queries == len(queue.calls)


@pytest.mark.timeout(60)
def test_a_sign_ends_a_job_without_a_query_and_a_missing_sign_gets_grace(tmp_path: object) -> None:
    queue = FakeQueue()
    queue.jobs = {7: JobState("COMPLETED"), 8: JobState("RUNNING")}
    watcher = QueueWatcher(queue)
    ends = Ends(2)
    signs = {7: threading.Event(), 8: threading.Event()}
    signs[8].set()  # its output is there already
    for job in (7, 8):
        watcher.watch(job, ends.callback(job), done=signs[job].is_set)
    ends.wait()
    assert ends.ends == {7: JobEnd("COMPLETED"), 8: JobEnd("COMPLETED")}
    asked_about_7 = [call for call in queue.calls if 7 in call]
    assert len(asked_about_7) == OUTPUT_GRACE_POLLS + 1  # COMPLETED without output: lost after the grace queries
    assert not any(8 in call for call in queue.calls)  # its sign was enough


@pytest.mark.timeout(60)
def test_the_thread_ends_with_the_last_job_and_restarts_with_the_next() -> None:
    queue = FakeQueue()
    queue.jobs = {1: JobState("FAILED", "NonZeroExitCode"), 2: JobState("OUT_OF_MEMORY")}
    watcher = QueueWatcher(queue, name="test-watcher")
    first = Ends(1)
    watcher.watch(1, first.callback(1))
    first.wait()
    assert first.ends == {1: JobEnd("FAILED", "NonZeroExitCode")}
    second = Ends(1)
    watcher.watch(2, second.callback(2))
    second.wait()
    assert second.ends == {2: JobEnd("OUT_OF_MEMORY")}
    assert len(watcher) == 0


@pytest.mark.timeout(60)
def test_a_failing_query_is_retried() -> None:
    queue = FakeQueue()
    failures = iter([RuntimeError("slurmctld down")])
    real = queue.states

    def flaky(job_ids: Sequence[int]) -> Mapping[int, JobState]:
        problem = next(failures, None)
        if problem is not None:
            raise problem
        return real(job_ids)

    queue.states = flaky  # type: ignore[method-assign]
    queue.jobs = {4: JobState("NODE_FAIL")}
    watcher = QueueWatcher(queue)
    ends = Ends(1)
    watcher.watch(4, ends.callback(4))
    ends.wait()
    assert ends.ends == {4: JobEnd("NODE_FAIL")}
    assert watcher.queries == 2


@pytest.mark.timeout(30)
def test_pid_runs_checks_the_command_line(tmp_path: object) -> None:
    marker = f"xl-spawn-marker-{os.getpid()}"
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code, marker], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        # Once it prints, the interpreter itself runs (not a launcher that execs it): its command line is final.
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert pid_runs(proc.pid, marker)
        assert not pid_runs(proc.pid, marker + "-other")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
    assert not pid_runs(proc.pid, marker)  # reaped: gone
    assert not pid_runs(0, marker) and not pid_runs(-1, marker)
    with pytest.raises(ValueError, match="non-empty"):
        pid_runs(proc.pid, "")
    with pytest.raises(TypeError, match="pid must be an int"):
        pid_runs(True, marker)

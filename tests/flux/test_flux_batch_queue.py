"""xl_spawn.FluxBatchQueue with the one QueueWatcher, against the real instance: flux batch jobs end as the
watcher's states (COMPLETED, FAILED, CANCELLED, TIMEOUT) and dependencies hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from xl_spawn import JOB_LOG_NAME, FluxBatchQueue, JobEnd, QueueWatcher, SubmissionError, flux_job_script_variables

END_TIMEOUT = 60.0


class Ends:
    """The ends the watcher reports, waited on through an event per job."""

    def __init__(self) -> None:
        self.ends: dict[int, JobEnd] = {}
        self.events: dict[int, threading.Event] = {}

    def callback(self, job: int) -> tuple[int, object]:
        self.events[job] = threading.Event()

        def on_end(end: JobEnd) -> None:
            self.ends[job] = end
            self.events[job].set()

        return job, on_end

    def wait(self, job: int) -> JobEnd:
        assert self.events[job].wait(END_TIMEOUT), f"no end of job {job} within {END_TIMEOUT} s"
        return self.ends[job]


@pytest.fixture
def queue() -> Iterator[FluxBatchQueue]:
    queue = FluxBatchQueue()
    submitted: list[int] = []
    original = queue.submit

    def submit(*args: object, **kwargs: object) -> int:
        job = original(*args, **kwargs)  # type: ignore[arg-type]
        submitted.append(job)
        return job

    queue.submit = submit  # type: ignore[method-assign]
    yield queue
    states = queue.states(submitted) if submitted else {}
    running = [job for job, state in states.items() if not state.final]
    if running:
        queue.cancel(running)


def submit(queue: FluxBatchQueue, directory: Path, command: str, **kwargs: object) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    variables = flux_job_script_variables(
        job_name=directory.name,
        working_directory=str(directory),
        command=command,
        **kwargs,  # type: ignore[arg-type]
    )
    return queue.submit(str(directory), variables)


def watch(queue: FluxBatchQueue, ends: Ends, *jobs: int) -> QueueWatcher:
    watcher = QueueWatcher(queue)
    for job in jobs:
        watcher.watch(*ends.callback(job))  # type: ignore[arg-type]
    return watcher


def test_a_job_runs_in_its_directory_and_completes(queue: FluxBatchQueue, tmp_path: Path) -> None:
    job = submit(queue, tmp_path / "ok", "echo hello from $PWD; echo to-stderr >&2")
    ends = Ends()
    watch(queue, ends, job)
    assert ends.wait(job) == JobEnd("COMPLETED")
    log = (tmp_path / "ok" / JOB_LOG_NAME).read_text()
    assert f"hello from {tmp_path / 'ok'}" in log and "to-stderr" in log
    assert (tmp_path / "ok" / "run_queue.sh").read_text().startswith("#!/bin/bash\n# flux: --job-name=ok")


def test_a_failing_job_is_failed(queue: FluxBatchQueue, tmp_path: Path) -> None:
    job = submit(queue, tmp_path / "bad", "exit 3")
    ends = Ends()
    watch(queue, ends, job)
    assert ends.wait(job).state == "FAILED"


def test_a_dependent_job_waits_for_its_upstream(queue: FluxBatchQueue, tmp_path: Path) -> None:
    first = submit(queue, tmp_path / "a", f"sleep 2; touch {tmp_path / 'a-done'}")
    second = submit(queue, tmp_path / "b", f"test -e {tmp_path / 'a-done'}", dependency=[first])
    assert queue.states([second])[second].state == "PENDING"
    ends = Ends()
    watch(queue, ends, first, second)
    assert ends.wait(first) == JobEnd("COMPLETED")
    assert ends.wait(second) == JobEnd("COMPLETED")  # `test -e` would fail had it run before a-done existed


def test_a_failed_upstream_fails_its_dependent(queue: FluxBatchQueue, tmp_path: Path) -> None:
    first = submit(queue, tmp_path / "a", "exit 1")
    second = submit(queue, tmp_path / "b", "true", dependency=[first])
    ends = Ends()
    watch(queue, ends, first, second)
    assert ends.wait(first).state == "FAILED"
    end = ends.wait(second)
    assert end.state == "FAILED" and "can never be satisfied" in end.detail


def test_cancel_ends_a_job_cancelled(queue: FluxBatchQueue, tmp_path: Path) -> None:
    job = submit(queue, tmp_path / "c", "sleep 60")
    ends = Ends()
    watcher = watch(queue, ends, job)
    queue.cancel([job])
    watcher.hurry()
    assert ends.wait(job).state == "CANCELLED"


def test_the_time_limit_ends_a_job_as_timeout(queue: FluxBatchQueue, tmp_path: Path) -> None:
    started = time.monotonic()
    job = submit(queue, tmp_path / "t", "sleep 60", run_time_max=1)
    ends = Ends()
    watch(queue, ends, job)
    end = ends.wait(job)
    assert end.state == "TIMEOUT" and "resource allocation expired" in end.detail
    assert time.monotonic() - started < 15


def test_a_refused_script_raises_with_flux_words(queue: FluxBatchQueue, tmp_path: Path) -> None:
    with pytest.raises(SubmissionError) as refused:
        submit(queue, tmp_path / "x", "true", extra={"exclusive": True})  # --exclusive without --nodes
    assert "exclusive" in str(refused.value)


def test_pysqa_config_directory_with_queue_type_flux(queue: FluxBatchQueue, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "queue.yaml").write_text(
        "queue_type: FLUX\nqueue_primary: flux\nqueues:\n"
        "  flux: {cores_max: 4, cores_min: 1, run_time_max: 600, script: flux.sh}\n"
    )
    (config / "flux.sh").write_text(
        "#!/bin/bash\n# flux: --job-name={{job_name}}\n# flux: --output=time.out\n# flux: --nslots={{cores}}\n"
        # pysqa passes dependency_list=None without dependencies, so its templates guard the loop
        "{%- if dependency_list %}{%- for job in dependency_list %}\n# flux: --dependency=afterok:{{job}}"
        "{%- endfor %}{%- endif %}\n\n{{command}}\n"
    )
    pysqa_queue = FluxBatchQueue(pysqa_config_directory=str(config))
    assert pysqa_queue.template_variables(None) == frozenset({"job_name", "cores", "dependency_list", "command"})
    first = submit(pysqa_queue, tmp_path / "p", "sleep 1; echo via pysqa")
    second = submit(pysqa_queue, tmp_path / "q", f"grep -q via {tmp_path / 'p' / JOB_LOG_NAME}", dependency=[first])
    assert "--dependency=afterok:" in (tmp_path / "q" / "run_queue.sh").read_text()
    ends = Ends()
    watch(pysqa_queue, ends, first, second)
    assert ends.wait(first) == JobEnd("COMPLETED")
    assert ends.wait(second) == JobEnd("COMPLETED")
    assert "via pysqa" in (tmp_path / "p" / JOB_LOG_NAME).read_text()

"""Tests against the project's real SLURM cluster (``scripts/slurm-cluster.sh``).

Every test under tests/slurm is marked ``slurm`` (select with ``-m slurm``, leave out with ``-m "not slurm"``).
The session fixture ``slurm_cluster`` starts the cluster if it is not up (scripts/test.sh starts it once before
pytest and stops it afterwards) and skips only when the script says SLURM cannot run on this machine (exit 3:
not root, no apt/network, a foreign slurm.conf), with its reason. A cluster that should start but does not is an
error, not a skip.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from xl_slurm_helpers import SCRIPT, SlurmCluster, SlurmUnavailable, ensure_cluster

HERE = Path(__file__).resolve().parent
TIMELIMIT_JOB = pytest.StashKey[int]()
# The smallest time limit is one minute, and slurmctld checks limits every 30 s: TIMEOUT comes 60-90 s after start.
TIMELIMIT_OPTIONS = ["--time=1", "--job-name=xltest-timelimit", "--output=/dev/null"]
TIMELIMIT_STEP = pytest.StashKey["TimelimitStep"]()


@dataclass
class TimelimitStep:
    """A SlurmJobExecutor call of ``time.sleep(300)`` with ``run_time_max=60`` (``srun --time=1``): SLURM ends
    its step TIMEOUT 60-90 s after it started."""

    executor: Any
    future: Future[Any]
    job_name: str
    started: float


def start_timelimit_step() -> TimelimitStep:
    from executorlib import SlurmJobExecutor

    name = f"xltest-steptimeout-{uuid.uuid4().hex[:10]}"
    executor = SlurmJobExecutor(max_workers=1)
    future = executor.submit(
        time.sleep, 300, resource_dict={"run_time_max": 60, "slurm_cmd_args": [f"--job-name={name}"]}
    )
    return TimelimitStep(executor, future, name, time.monotonic())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slurm: runs against the real SLURM test cluster (scripts/slurm-cluster.sh); tests/slurm only"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.slurm)


def pytest_collection_finish(session: pytest.Session) -> None:
    """If a selected test waits for a job to hit its time limit and the cluster is already up (scripts/test.sh
    starts it before pytest), submit that job now, so its 60-90 s pass while the earlier tests run."""
    if session.config.option.collectonly:
        return
    if any("timelimit_step" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            if subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, timeout=30).returncode == 0:
                session.config.stash[TIMELIMIT_STEP] = start_timelimit_step()
        except (OSError, subprocess.SubprocessError, ImportError, RuntimeError):
            pass  # the fixture starts it instead
    if not any("timelimit_job" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    try:
        if subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, timeout=30).returncode != 0:
            return
        out = subprocess.run(
            ["sbatch", "--parsable", *TIMELIMIT_OPTIONS, "--wrap", "sleep 300"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        session.config.stash[TIMELIMIT_JOB] = int(out.split(";")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return  # the fixture submits it instead


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The running cluster: ``partition``, ``node``, ``cpus``, ``python`` and helpers ``srun``, ``salloc``,
    ``sbatch``, ``wait_final``, ``job_info`` (see xl_slurm_helpers)."""
    try:
        return ensure_cluster()
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def timelimit_job(request: pytest.FixtureRequest, slurm_cluster: SlurmCluster) -> Iterator[int]:
    """A running ``sleep 300`` job with ``--time=1``: it ends TIMEOUT 60-90 s after it started."""
    job = request.config.stash.get(TIMELIMIT_JOB, None)
    if job is None:
        job = slurm_cluster.sbatch("sleep 300", options=TIMELIMIT_OPTIONS)
    yield job
    slurm_cluster.run(["scancel", str(job)], timeout=30, check=False)


@pytest.fixture(scope="session")
def timelimit_step(request: pytest.FixtureRequest, slurm_cluster: SlurmCluster) -> Iterator[TimelimitStep]:
    """A SlurmJobExecutor call that SLURM ends with TIMEOUT 60-90 s after it started (started at collection when
    the cluster is up, so the wait overlaps the other tests)."""
    step = request.config.stash.get(TIMELIMIT_STEP, None)
    if step is None:
        step = start_timelimit_step()
    yield step
    slurm_cluster.cancel_name(step.job_name)
    step.executor.shutdown(wait=False, cancel_futures=True)

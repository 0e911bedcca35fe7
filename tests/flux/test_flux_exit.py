"""A process that used FluxJobSpawner exits promptly: the exit hook cancels the jobs of spawners nobody shut down
and stops the shared FluxExecutor within xl_spawn.flux.EXIT_TIMEOUT (without it, the executor's own finalizer
waited at exit until every job had ended). Each case runs a real child interpreter against the test instance."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from xl_flux_helpers import FluxInstance

PROMPT = 4.0  # seconds from the job's submission to the child's exit: the hook's bound is 5 s, these need less
CHILD_TIMEOUT = 60.0


def run_child(body: str, tmp_path: Path, flux_instance: FluxInstance) -> tuple[int, float, subprocess.Popen[str]]:
    """Run ``body`` after a spawner submitted ``COMMAND``; return the job id, the seconds from its submission
    to the child's exit, and the finished child."""
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """\
            import sys
            import xl_spawn.flux
            from xl_spawn import FluxJobSpawner, FluxRequest

            spawner = FluxJobSpawner(cwd=sys.argv[1])
            """
        )
        + textwrap.dedent(body)
    )
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=flux_instance.env(),
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child prints the job id right after bootup, then exits
        submitted = time.monotonic()
        child.wait(CHILD_TIMEOUT)
        elapsed = time.monotonic() - submitted
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(CHILD_TIMEOUT)
    assert line.strip().isdigit(), f"child printed {line!r}; stderr: {child.stderr.read() if child.stderr else ''}"
    return int(line), elapsed, child


def job_status(flux_instance: FluxInstance, jobid: int, timeout: float = 10.0) -> str:
    """The job's final status, once flux has finished cleaning it up (within ``timeout`` seconds)."""
    flux_instance.run(["job", "wait-event", "-t", str(timeout), str(jobid), "clean"], timeout=timeout + 30)
    return flux_instance.run(["jobs", "-n", "-o", "{status}", str(jobid)]).stdout.strip()


def test_exit_cancels_a_job_nobody_shut_down(tmp_path: Path, flux_instance: FluxInstance) -> None:
    jobid, elapsed, child = run_child(
        """\
        spawner.bootup(["sleep", "60"])
        print(spawner.pid, flush=True)
        """,
        tmp_path,
        flux_instance,
    )
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    assert elapsed < PROMPT, f"the child took {elapsed:.1f} s to exit"
    assert job_status(flux_instance, jobid, timeout=5) == "CANCELED"


def test_exit_after_shutdown_is_prompt(tmp_path: Path, flux_instance: FluxInstance) -> None:
    jobid, elapsed, child = run_child(
        """\
        spawner.bootup(["sleep", "60"])
        print(spawner.pid, flush=True)
        spawner.shutdown(wait=True)
        """,
        tmp_path,
        flux_instance,
    )
    assert child.returncode == 0
    assert elapsed < PROMPT, f"the child took {elapsed:.1f} s to exit"
    assert job_status(flux_instance, jobid) == "CANCELED"


def test_exit_after_the_job_ended_is_prompt(tmp_path: Path, flux_instance: FluxInstance) -> None:
    jobid, elapsed, child = run_child(
        """\
        spawner.bootup(["true"])
        print(spawner.pid, flush=True)
        assert spawner.wait(timeout=30) == 0
        """,
        tmp_path,
        flux_instance,
    )
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    assert elapsed < PROMPT
    assert job_status(flux_instance, jobid) == "COMPLETED"


@pytest.mark.parametrize("bound", [1.0])
def test_exit_is_bounded_when_a_job_outlives_the_hook(
    bound: float, tmp_path: Path, flux_instance: FluxInstance
) -> None:
    # The child's cancel does nothing (as when the instance does not answer), so the shared FluxExecutor still
    # watches a running job at exit: the child must leave after EXIT_TIMEOUT, not when the job ends.
    jobid, elapsed, child = run_child(
        f"""\
        xl_spawn.flux.EXIT_TIMEOUT = {bound}
        FluxJobSpawner._signal = lambda self, how: None
        spawner.bootup(["sleep", "30"])
        print(spawner.pid, flush=True)
        """,
        tmp_path,
        flux_instance,
    )
    try:
        assert child.returncode == 0, child.stderr.read() if child.stderr else ""
        assert elapsed < bound + 2.0, f"the child took {elapsed:.1f} s to exit with EXIT_TIMEOUT={bound}"
        state = flux_instance.run(["jobs", "-n", "-o", "{state}", str(jobid)]).stdout.strip()
        assert state == "RUN"  # the child left it running: the bound, not the job's end, let it go
    finally:
        flux_instance.run(["cancel", str(jobid)], check=False)
    assert job_status(flux_instance, jobid) == "CANCELED"

"""flux batch's pure parts: job ids, the default template, the variables, the state table (no flux needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import DEFAULT_FLUX_TEMPLATE, FluxBatchQueue, JobState, flux_job_script_variables, render_job_script
from xl_spawn.flux_batch import flux_cancel_argv, flux_jobs_argv, parse_flux_jobs, parse_job_id
from xl_spawn.sbatch import FINAL_STATES

_F58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def to_f58(value: int) -> str:
    digits = ""
    while True:
        value, rest = divmod(value, 58)
        digits = _F58[rest] + digits
        if value == 0:
            return digits


@given(st.integers(0, 2**63))
def test_job_ids_read_in_every_form(job: int) -> None:
    assert parse_job_id(str(job)) == job
    assert parse_job_id("ƒ" + to_f58(job)) == job
    assert parse_job_id("f" + to_f58(job) + "\n") == job


def test_a_known_id_and_bad_ids() -> None:
    assert parse_job_id("ƒMAjEM5") == 13237223424  # as flux printed it for that decimal id (notes/flux.md run)
    for bad in ("", "ƒ", "ƒ0OIl", "job 12", "-3"):
        with pytest.raises(ValueError, match="not a flux job id"):
            parse_job_id(bad)


def render(**kwargs: object) -> str:
    base: dict[str, object] = {"job_name": "t", "working_directory": "/w", "command": "python -m x"}
    base.update(kwargs)
    return render_job_script(DEFAULT_FLUX_TEMPLATE, flux_job_script_variables(**base))  # type: ignore[arg-type]


def directives(script: str) -> list[str]:
    return [line.removeprefix("# flux: ") for line in script.splitlines() if line.startswith("# flux: ")]


def test_minimal_script() -> None:
    script = render()
    assert script.startswith("#!/bin/bash\n")
    assert directives(script) == ["--job-name=t", "--output=time.out", "--nslots=1"]
    assert script.endswith("\npython -m x\n")


def test_every_resource_is_one_directive() -> None:
    script = render(
        cores=4,
        dependency=["ƒMAjEM5", 7],
        run_time_max=90,
        priority=20,
        extra={"threads_per_core": 2, "gpus_per_core": 1, "num_nodes": 2, "exclusive": True},
    )
    assert directives(script) == [
        "--job-name=t",
        "--output=time.out",
        "--nslots=4",
        "--cores-per-slot=2",
        "--gpus-per-slot=1",
        "--nodes=2",
        "--exclusive",
        "--time-limit=90s",  # seconds: no rounding to minutes as for SLURM
        "--urgency=20",
        "--dependency=afterok:13237223424",
        "--dependency=afterok:7",
    ]


def test_urgency_zero_is_written_and_bad_priorities_are_refused() -> None:
    assert "--urgency=0" in directives(render(priority=0))
    with pytest.raises(ValueError, match="between 0 and 31"):
        render(priority=32)


def test_the_default_templates_variables() -> None:
    names = FluxBatchQueue().template_variables(None)
    assert names is not None
    assert {"job_name", "cores", "threads_per_core", "gpus_per_core", "num_nodes", "exclusive"} <= names
    assert {"run_time_max", "priority", "dependency", "command"} <= names


def test_states_map_to_the_watchers_names() -> None:
    text = (
        "11|CD||\n12|F|dependency|dependency after-success=ƒx can never be satisfied\n13|CA|cancel|\n"
        "14|TO|timeout|resource allocation expired\n15|R||\n16|D||\n17|C||\nJobID 123 unknown\n"
    )
    states = parse_flux_jobs(text)
    assert states[11] == JobState("COMPLETED")
    assert states[12] == JobState("FAILED", "dependency: dependency after-success=ƒx can never be satisfied")
    assert states[13] == JobState("CANCELLED", "cancel")
    assert states[14] == JobState("TIMEOUT", "timeout: resource allocation expired")
    assert [states[job].final for job in (15, 16, 17)] == [False, False, False]
    assert {states[job].state for job in (11, 12, 13, 14)} <= FINAL_STATES
    assert 123 not in states


def test_argv() -> None:
    assert flux_jobs_argv([3, 4])[-2:] == ["3", "4"]
    assert flux_cancel_argv([3]) == ["flux", "cancel", "3"]
    with pytest.raises(ValueError, match="no job ids"):
        flux_jobs_argv([])

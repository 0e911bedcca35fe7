"""Job scripts for sbatch (golden and property tests), status parsing, and the one-call status queries.

Regenerate the golden scripts after a deliberate change (then review the diff):
    .venv/bin/python packages/xl-spawn/tests/test_sbatch.py --regenerate
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn.sbatch import (
    DEFAULT_SLURM_TEMPLATE,
    JobState,
    SubmissionError,
    job_script_variables,
    parse_sacct,
    parse_sbatch_output,
    parse_squeue,
    render_job_script,
    sacct_argv,
    squeue_argv,
)

GOLDEN = Path(__file__).parent / "golden" / "sbatch"

# The template of executorlib's documentation (pysqa style: run_time_max // 60, dependency | join(',')).
DOCS_TEMPLATE = """\
#!/bin/bash
#SBATCH --output=time.out
#SBATCH --job-name={{job_name}}
#SBATCH --chdir={{working_directory}}
#SBATCH --get-user-env=L
#SBATCH --partition={{partition}}
{%- if run_time_max %}
#SBATCH --time={{ [1, run_time_max // 60]|max }}
{%- endif %}
{%- if dependency %}
#SBATCH --dependency=afterok:{{ dependency | join(',') }}
{%- endif %}
{%- if memory_max %}
#SBATCH --mem={{memory_max}}G
{%- endif %}
#SBATCH --ntasks={{cores}}

{{command}}
"""

CASES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "default_minimal": (None, {}),
    "default_everything": (
        None,
        {
            "cores": 4,
            "dependency": [11, 12, 13],
            "run_time_max": 61,
            "memory_max": 8,
            "partition": "debug",
            "extra": {"threads_per_core": 2, "num_nodes": 1, "exclusive": True},
        },
    ),
    "docs_template_two_dependencies": (
        DOCS_TEMPLATE,
        {"cores": 2, "dependency": [5, 6], "run_time_max": 180, "partition": "s.cmfe"},
    ),
}


def build(template: str | None, options: dict[str, Any]) -> str:
    variables = job_script_variables(
        job_name="cache",
        working_directory="/scratch/cache/add0123",
        command="/venv/bin/python -m xl_cache.worker /scratch/cache/add0123_i.h5",
        **options,
    )
    return render_job_script(template, variables)


@pytest.mark.parametrize("name", sorted(CASES))
def test_scripts_match_the_golden_files(name: str) -> None:
    template, options = CASES[name]
    assert build(template, options) == (GOLDEN / f"{name}.sh").read_text()


def test_the_default_script_needs_no_configuration() -> None:
    script = build(None, {})
    assert "--partition" not in script and "--dependency" not in script and "--time" not in script
    assert "#SBATCH --ntasks=1" in script and script.rstrip().endswith("_i.h5")


def test_the_docs_template_writes_every_dependency_as_afterok() -> None:
    script = build(DOCS_TEMPLATE, {"dependency": [5, 6, 7]})
    assert "#SBATCH --dependency=afterok:5:6:7" in script


ids = st.lists(st.integers(min_value=1, max_value=10**9), max_size=8, unique=True)


@given(
    dependency=ids,
    cores=st.integers(min_value=1, max_value=4096),
    seconds=st.one_of(st.none(), st.integers(min_value=1, max_value=10**7)),
    template=st.sampled_from([None, DOCS_TEMPLATE]),
)
def test_scripts_hold_every_request(
    dependency: list[int], cores: int, seconds: int | None, template: str | None
) -> None:
    script = build(template, {"dependency": dependency, "cores": cores, "run_time_max": seconds})
    assert f"#SBATCH --ntasks={cores}\n" in script
    found = re.findall(r"--dependency=(\S+)", script)
    if dependency:
        # every upstream must succeed: one afterok with colons, never a comma (SLURM reads ",B" as afterany:B)
        assert found == ["afterok:" + ":".join(map(str, dependency))]
    else:
        assert found == []
    minutes = re.findall(r"--time=(\d+)", script)
    if seconds is None:
        assert minutes == []
    else:
        assert int(minutes[0]) * 60 >= seconds > (int(minutes[0]) - 1) * 60  # rounded up, never down


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(max_value=0))
def test_a_bad_time_limit_is_rejected(seconds: float) -> None:
    if isinstance(seconds, float) and seconds > 0 and seconds != float("inf"):
        return
    with pytest.raises(ValueError):
        job_script_variables(job_name="j", working_directory="/w", command="c", run_time_max=seconds)


def test_bad_dependencies_and_cores_are_rejected() -> None:
    with pytest.raises(ValueError, match="job id"):
        job_script_variables(job_name="j", working_directory="/w", command="c", dependency=["5,afterany:6"])
    with pytest.raises(ValueError, match="cores"):
        job_script_variables(job_name="j", working_directory="/w", command="c", cores=0)


def test_sbatch_output_and_status_parsing() -> None:
    assert parse_sbatch_output("67\n") == 67 and parse_sbatch_output("68;cluster\n") == 68
    with pytest.raises(ValueError):
        parse_sbatch_output("sbatch: error: invalid partition\n")
    text = "12|RUNNING|None\n13|PENDING|DependencyNeverSatisfied\n14|TIMEOUT|TimeLimit\n14.batch|X|y\n"
    states = parse_squeue(text)
    assert states == {
        12: JobState("RUNNING", "None"),
        13: JobState("PENDING", "DependencyNeverSatisfied"),
        14: JobState("TIMEOUT", "TimeLimit"),
    }
    assert states[13].never_runs and states[14].final and not states[12].final
    assert parse_sacct("15|CANCELLED by 0\n16|OUT_OF_MEMORY\n") == {
        15: JobState("CANCELLED"),
        16: JobState("OUT_OF_MEMORY"),
    }


@given(ids.filter(bool))
def test_one_status_call_names_every_job(job_ids: list[int]) -> None:
    for argv in (squeue_argv(job_ids), sacct_argv(job_ids), sacct_argv(job_ids, completion_log=True)):
        listed = argv[argv.index("-j") + 1].split(",")
        assert listed == [str(job) for job in job_ids]
    assert "-t" in squeue_argv(job_ids) and "all" in squeue_argv(job_ids)


def test_a_submission_error_shows_the_command_output() -> None:
    error = SubmissionError(1, ["sbatch"], output="sbatch: error: invalid partition specified: nope\n")
    assert "invalid partition specified: nope" in str(error) and error.output.startswith("sbatch: error")


def test_the_default_template_is_exported() -> None:
    import xl_spawn

    assert xl_spawn.DEFAULT_SLURM_TEMPLATE == DEFAULT_SLURM_TEMPLATE


if __name__ == "__main__" and "--regenerate" in sys.argv:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for case, (template, options) in CASES.items():
        (GOLDEN / f"{case}.sh").write_text(build(template, options))
        print(f"wrote {case}.sh")


def test_template_variables_are_what_a_template_reads() -> None:
    from xl_spawn.sbatch import template_variables

    default = template_variables(None)
    assert {"job_name", "partition", "memory_max", "cores", "threads_per_core", "run_time_max", "command"} <= default
    assert "account" not in default
    custom = "#SBATCH -A {{ account }}\n{% for d in dependency %}{{ d }}{% endfor %}\n{{ command }}\n"
    assert template_variables(custom) == {"account", "dependency", "command"}  # not the loop's own name


def test_pysqa_template_variables_read_every_queues_script(tmp_path: Path) -> None:
    from xl_spawn.sbatch import SlurmQueue, pysqa_template_variables

    (tmp_path / "queue.yaml").write_text(
        "queue_type: SLURM\nqueue_primary: a\nqueues:\n"
        "  a: {cores_max: 4, cores_min: 1, run_time_max: 60, script: a.sh}\n"
        "  b: {cores_max: 4, cores_min: 1, run_time_max: 60, script: b.sh}\n"
    )
    (tmp_path / "a.sh").write_text("{{ command }} {{ account }}\n")
    (tmp_path / "b.sh").write_text("{{ command }} {{ qos }}\n")
    assert pysqa_template_variables(str(tmp_path)) == {"command", "account", "qos"}
    queue = SlurmQueue(pysqa_config_directory=str(tmp_path))
    assert queue.template_variables(None) == {"command", "account", "qos"}
    assert queue.template_variables("{{ other }}") == {"other"}  # a submission_template wins over the queues
    assert pysqa_template_variables(str(tmp_path / "missing")) is None

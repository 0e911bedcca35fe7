"""xl_spawn.batch, what sbatch and flux batch share: queue commands, script variables, and one home for each name."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import xl_spawn
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import batch, flux_batch, sbatch
from xl_spawn.batch import SubmissionError, base_script_variables, check_run_time_max, run_queue_command

SOURCE = Path(xl_spawn.__file__).parent


def test_a_failing_command_raises_with_its_own_output() -> None:
    code = "import sys; print('sbatch: error: invalid partition'); sys.exit(3)"
    with pytest.raises(SubmissionError) as raised:
        run_queue_command([sys.executable, "-c", code], timeout=30)
    assert raised.value.returncode == 3
    assert "invalid partition" in str(raised.value)


def test_a_missing_command_is_127_with_its_name() -> None:
    with pytest.raises(SubmissionError) as raised:
        run_queue_command(["/nonexistent/sbatch", "x"], timeout=30)
    assert raised.value.returncode == 127
    assert "/nonexistent/sbatch: command not found" in str(raised.value)


def test_output_comes_back_with_stderr_merged(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print('warn', file=sys.stderr)"
    out = run_queue_command([sys.executable, "-c", code], cwd=str(tmp_path), timeout=30)
    assert out.split() == [str(tmp_path), "warn"]


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (0, ValueError, "run_time_max must be a positive number of seconds, got 0"),
        (float("nan"), ValueError, "positive number of seconds"),
        ("60", TypeError, "run_time_max must be a number of seconds, got '60'"),
        (True, TypeError, "got True"),
    ],
)
def test_bad_time_limits_name_the_value(value: object, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(")):
        check_run_time_max(value)


@given(
    cores=st.integers(1, 10**6),
    extra=st.dictionaries(st.sampled_from(["cores", "command", "threads_per_core", "gpus_per_core"]), st.integers()),
)
def test_named_variables_win_over_extra(cores: int, extra: dict[str, int]) -> None:
    variables = base_script_variables(
        job_name="j",
        working_directory="/w",
        command="run",
        cores=cores,
        dependency=["7"],
        run_time_max=None,
        memory_max=None,
        partition=None,
        extra=extra,
    )
    assert variables["cores"] == cores and variables["command"] == "run"
    assert variables["dependency"] == variables["dependency_list"] == ["7"]
    for name in set(extra) - {"cores", "command"}:
        assert variables[name] == extra[name]


def test_shared_names_have_one_home() -> None:
    for name in ("JOB_LOG_NAME", "FINAL_STATES", "JobState", "SubmissionError", "pysqa_template_variables"):
        assert getattr(sbatch, name) is getattr(batch, name)
    for name in ("JOB_LOG_NAME", "JobState", "SubmissionError"):
        assert getattr(xl_spawn, name) is getattr(batch, name)
    assert flux_batch.JobState is batch.JobState


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = []
    for path in sorted(SOURCE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xl_spawn"):
                offenders += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert offenders == []

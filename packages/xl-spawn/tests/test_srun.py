"""srun argv (property and golden tests) and the SLURM state named in srun's output.

Regenerate the golden argvs after a deliberate change (then review the diff):
    .venv/bin/python packages/xl-spawn/tests/test_srun.py --regenerate
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import SrunRequest, describe_srun_exit, parse_slurm_state, srun_argv, srun_time_minutes

GOLDEN = Path(__file__).parent / "golden" / "srun"

words = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12)
commands = st.lists(words, min_size=1, max_size=5)
requests = st.builds(
    SrunRequest,
    cores=st.integers(1, 4096),
    threads_per_core=st.integers(1, 256),
    gpus_per_core=st.integers(0, 8),
    num_nodes=st.none() | st.integers(1, 1000),
    exclusive=st.booleans(),
    run_time_max=st.none() | st.integers(1, 10**7) | st.floats(0.001, 1e7),
    pmi_mode=st.none() | st.sampled_from(["pmi2", "pmix", "none", "cray_shasta"]),
    cwd=st.none() | st.text(alphabet=st.characters(blacklist_characters="\x00"), min_size=1, max_size=30),
    overcommit=st.booleans(),
    extra_args=st.lists(st.sampled_from(["--mem=4G", "--comment=x", "-v", "--label"]), max_size=3),
    exact=st.booleans(),
)


def expected_flags(request: SrunRequest) -> dict[str, str | None]:
    """Flag name → value (None for a switch) that the request must produce, each exactly once."""
    flags: dict[str, str | None] = {
        "--ntasks": str(request.cores),
        "--cpus-per-task": str(request.threads_per_core),
    }
    if request.exact:
        flags["--exact"] = None
    if request.gpus_per_core:
        flags["--gpus-per-task"] = str(request.gpus_per_core)
    if request.num_nodes is not None:
        flags["--nodes"] = str(request.num_nodes)
    if request.exclusive:
        flags["--exclusive"] = None
    if request.overcommit:
        flags["--overcommit"] = None
    if request.run_time_max is not None:
        flags["--time"] = str(srun_time_minutes(request.run_time_max))
    if request.pmi_mode is not None:
        flags["--mpi"] = request.pmi_mode
    if request.cwd is not None:
        flags["--chdir"] = str(request.cwd)
    return flags


@given(requests, commands)
def test_every_requested_resource_appears_exactly_once(request: SrunRequest, command: list[str]) -> None:
    argv = srun_argv(request, command)
    assert argv[0] == "srun"
    built = argv[1 : len(argv) - len(request.extra_args) - len(command)]
    parsed = [(token.partition("=")[0], token.partition("=")[2] if "=" in token else None) for token in built]
    names = [name for name, _ in parsed]
    assert len(names) == len(set(names)), f"a flag appears twice in {built}"
    assert dict(parsed) == expected_flags(request)


@given(requests, commands)
def test_extra_args_then_the_command_come_last_untouched(request: SrunRequest, command: list[str]) -> None:
    argv = srun_argv(request, command, srun="/opt/slurm/bin/srun")
    assert argv[0] == "/opt/slurm/bin/srun"
    assert argv[len(argv) - len(command) :] == command
    assert argv[len(argv) - len(command) - len(request.extra_args) : len(argv) - len(command)] == list(
        request.extra_args
    )


@given(st.integers(1, 10**8) | st.floats(1e-6, 1e8))
def test_time_rounds_up_to_whole_minutes(seconds: float) -> None:
    minutes = srun_time_minutes(seconds)
    assert minutes >= 1
    assert minutes * 60 >= seconds
    assert minutes == 1 or (minutes - 1) * 60 < seconds


@pytest.mark.parametrize(("seconds", "minutes"), [(1, 1), (59, 1), (60, 1), (61, 2), (90, 2), (3600, 60), (3601, 61)])
def test_time_examples(seconds: int, minutes: int) -> None:
    assert srun_time_minutes(seconds) == minutes


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf")])
def test_no_limit_is_none_not_zero(seconds: float) -> None:
    # srun --time=0 means "no limit"; a zero or negative run_time_max must not turn into that.
    with pytest.raises(ValueError, match="use None for no limit"):
        SrunRequest(run_time_max=seconds)


@pytest.mark.parametrize(
    ("field", "value", "error", "text"),
    [
        ("cores", 0, ValueError, "cores must be at least 1"),
        ("cores", True, TypeError, "cores must be an int"),
        ("threads_per_core", 0, ValueError, "threads_per_core must be at least 1"),
        ("gpus_per_core", -1, ValueError, "gpus_per_core must be at least 0"),
        ("num_nodes", 0, ValueError, "num_nodes must be at least 1"),
        ("exclusive", 1, TypeError, "exclusive must be a bool"),
        ("overcommit", "yes", TypeError, "overcommit must be a bool"),
        ("exact", 0, TypeError, "exact must be a bool"),
        ("run_time_max", "60", TypeError, "number of seconds"),
        ("pmi_mode", "", ValueError, "one word"),
        ("pmi_mode", "pmi 2", ValueError, "one word"),
        ("cwd", "", ValueError, "cwd must not be empty"),
        ("cwd", 5, TypeError, "cwd must be a path"),
        ("extra_args", "--mem=4G", TypeError, "wrap it in a list"),
        ("extra_args", ["--mem", 4], TypeError, "got 4"),
    ],
)
def test_bad_fields_name_the_value(field: str, value: object, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        SrunRequest(**{field: value})  # type: ignore[arg-type]


def test_request_is_frozen_and_compares_by_value() -> None:
    request = SrunRequest(cwd=Path("/tmp/x"), extra_args=["--mem=4G"])
    assert request == SrunRequest(cwd="/tmp/x", extra_args=("--mem=4G",))
    assert hash(request) == hash(SrunRequest(cwd="/tmp/x", extra_args=("--mem=4G",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.cores = 2  # type: ignore[misc]


def test_command_and_srun_checks() -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        srun_argv(SrunRequest(), "python")
    with pytest.raises(ValueError, match="command is empty"):
        srun_argv(SrunRequest(), [])
    with pytest.raises(TypeError, match="got 5"):
        srun_argv(SrunRequest(), ["python", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="srun must be"):
        srun_argv(SrunRequest(), ["python"], srun="")
    with pytest.raises(TypeError, match="SrunRequest"):
        srun_argv({"cores": 2}, ["python"])  # type: ignore[arg-type]


# --- golden argvs ---


def build_golden(case: dict[str, Any]) -> list[str]:
    return srun_argv(SrunRequest(**case["request"]), case["command"], srun=case["srun"])


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("*.json"))


def test_there_are_golden_files() -> None:
    assert len(golden_files()) >= 5


@pytest.mark.parametrize("path", golden_files(), ids=lambda path: path.stem)
def test_golden_argv(path: Path) -> None:
    case = json.loads(path.read_text())
    assert build_golden(case) == case["argv"], f"{path.name} changed; see the module docstring to regenerate"


# --- how a step ended ---

STAMP = "2026-11-22T21:38:09"


@pytest.mark.parametrize(
    ("output", "state"),
    [
        (f"slurmstepd-localnode: error: *** JOB 13 ON localnode CANCELLED AT {STAMP} DUE TO TIME LIMIT ***", "TIMEOUT"),
        (f"srun: error: *** STEP 13.0 ON localnode CANCELLED AT {STAMP} DUE TO TIME LIMIT ***", "TIMEOUT"),
        (f"srun: error: *** STEP 13.0 CANCELLED AT {STAMP} DUE TO TIME LIMIT ***", "TIMEOUT"),  # srun's own line
        (f"slurmstepd: error: *** STEP 4.2 ON n07 CANCELLED AT {STAMP} DUE TO PREEMPTION ***", "PREEMPTED"),
        (
            f"slurmstepd: error: *** JOB 9 ON n07 CANCELLED AT {STAMP} DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR "
            "DETAILS ***",
            "NODE_FAIL",
        ),
        (f"slurmstepd: error: *** JOB 9 ON n07 CANCELLED AT {STAMP} DUE TO JOB REQUEUE ***", "REQUEUED"),
        (
            f"srun: Job step aborted: Waiting up to 32 seconds for job step to finish.\n"
            f"slurmstepd: error: *** STEP 5.0 ON localnode CANCELLED AT {STAMP} ***\n"
            "srun: error: localnode: tasks 0-1: Killed",
            "CANCELLED",
        ),
        ("slurmstepd: error: *** STEP 5.0 ON n1 FAILED (non-zero exit code or other failure mode) ***", "FAILED"),
        (
            "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=5.0. Some of your processes may have been "
            "killed by the cgroup out-of-memory handler.",
            "OUT_OF_MEMORY",
        ),
        ("srun: error: n1: task 0: Out Of Memory", "OUT_OF_MEMORY"),
        (
            "srun: error: Unable to create step for job 3: More processors requested than permitted",
            "LAUNCH_FAILED",
        ),
        ("srun: error: Unable to allocate resources: More processors requested than permitted", "LAUNCH_FAILED"),
        (
            "Traceback (most recent call last):\nValueError: boom\nsrun: error: n1: task 0: Exited with exit code 1",
            None,
        ),
        ("", None),
    ],
)
def test_parse_slurm_state(output: str, state: str | None) -> None:
    assert parse_slurm_state(output) == state


@given(words, words)
def test_time_limit_wins_wherever_it_is_in_the_output(before: str, after: str) -> None:
    banner = f"*** STEP 1.0 ON n1 CANCELLED AT {STAMP} DUE TO TIME LIMIT ***"
    assert parse_slurm_state(f"{before}\n{banner}\n{after}") == "TIMEOUT"


def test_describe_names_status_state_and_fix() -> None:
    text = describe_srun_exit(
        137, f"slurmstepd: error: *** STEP 13.0 ON localnode CANCELLED AT {STAMP} DUE TO TIME LIMIT ***"
    )
    assert text.startswith("EXIT(137, i.e. SIGKILL); SLURM state TIMEOUT:")
    assert "raise run_time_max" in text


def test_describe_a_launch_failure_quotes_srun() -> None:
    text = describe_srun_exit(
        1, "srun: error: Unable to create step for job 3: More processors requested than permitted"
    )
    assert text == (
        "EXIT(1); SLURM state LAUNCH_FAILED: More processors requested than permitted: srun could not start the "
        "step; ask for fewer cores or nodes, or allow overcommit"
    )


def test_describe_without_a_state_is_the_exit_status() -> None:
    assert describe_srun_exit(1, "srun: error: n1: task 0: Exited with exit code 1") == "EXIT(1)"


def regenerate() -> None:
    for path in golden_files():
        case = json.loads(path.read_text())
        case["argv"] = build_golden(case)
        path.write_text(json.dumps(case, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(f"usage: {sys.argv[0]} --regenerate")
    regenerate()

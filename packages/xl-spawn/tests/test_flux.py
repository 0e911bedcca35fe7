"""The pure half of xl_spawn.flux: FluxRequest's rules and flux_job_plan (no flux needed; the jobspec and the
spawner run against a real instance in tests/flux)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import FluxJobSpawner, FluxRequest, flux_job_plan
from xl_spawn.flux import FLUX_MISSING, FluxJobFailure, import_flux

requests = st.integers(1, 16).flatmap(
    lambda tasks: st.builds(
        FluxRequest,
        tasks=st.just(tasks),
        cores_per_task=st.integers(1, 8),
        gpus_per_task=st.integers(0, 4),
        num_nodes=st.none() | st.integers(1, tasks),
        duration=st.none() | st.floats(1e-3, 1e7),
        urgency=st.none() | st.integers(0, 31),
        cwd=st.none() | st.just("/some/dir"),
        pmi_mode=st.none() | st.sampled_from(["simple", "pmi2", "cray-pals"]),
        stdout=st.none() | st.just("/some/out"),
        stderr=st.none() | st.just("/some/err"),
    )
)
names = st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=8)


@given(
    request=requests,
    command=st.lists(st.text(min_size=1), min_size=1, max_size=5),
    env=st.dictionaries(names, st.text(max_size=5), max_size=4),
    environ=st.dictionaries(names, st.text(max_size=5), max_size=4),
    nested=st.booleans(),
)
def test_the_plan_carries_every_requested_resource(
    request: FluxRequest, command: list[str], env: dict[str, str], environ: dict[str, str], nested: bool
) -> None:
    plan = flux_job_plan(request, command, env=env, environ=environ, cwd="/fallback", nested=nested)
    assert plan.command == tuple(command)
    assert plan.num_tasks == request.tasks
    assert plan.cores_per_task == request.cores_per_task
    assert plan.gpus_per_task == (request.gpus_per_task or None)
    assert plan.num_nodes == request.num_nodes
    assert plan.exclusive == request.exclusive
    assert plan.duration == request.duration
    assert plan.stdout == request.stdout and plan.stderr == request.stderr
    assert plan.nested is nested
    # the working directory is always explicit: flux would use the broker's
    assert plan.cwd == (request.cwd or "/fallback")
    # env over the environment, nothing else
    assert plan.environment == {**environ, **env}
    assert dict(plan.shell_options) == ({"pmi": request.pmi_mode} if request.pmi_mode else {})
    assert plan.submit_kwargs() == ({} if request.urgency is None else {"urgency": request.urgency})


def test_the_plan_defaults_to_os_environ_and_this_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XL_FLUX_PLAN", "seen")
    plan = flux_job_plan(FluxRequest(), ["true"], env={"XL_FLUX_PLAN": "over"})
    assert plan.cwd == str(tmp_path)
    assert plan.environment["XL_FLUX_PLAN"] == "over"
    assert plan.environment["PATH"] == os.environ["PATH"]
    relative = flux_job_plan(FluxRequest(cwd="sub"), ["true"])
    assert relative.cwd == str(tmp_path / "sub")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"tasks": 0}, ValueError, "tasks must be at least 1, got 0"),
        ({"tasks": 1.5}, TypeError, "tasks must be an int"),
        ({"cores_per_task": True}, TypeError, "cores_per_task must be an int"),
        ({"gpus_per_task": -1}, ValueError, "gpus_per_task must be at least 0"),
        ({"num_nodes": 0}, ValueError, "num_nodes must be at least 1"),
        ({"exclusive": True}, ValueError, "exclusive=True needs num_nodes"),
        ({"num_nodes": 2}, ValueError, "num_nodes=2 is more than tasks (cores) = 1"),
        ({"exclusive": "yes", "num_nodes": 1}, TypeError, "exclusive must be a bool"),
        ({"duration": 0}, ValueError, "duration (run_time_max) must be a positive number of seconds, got 0"),
        ({"duration": float("inf")}, ValueError, "use None for no limit"),
        ({"duration": "1h"}, TypeError, "duration must be a number of seconds"),
        ({"urgency": 32}, ValueError, "urgency (priority) must be between 0 and 31"),
        ({"urgency": -1}, ValueError, "urgency must be at least 0"),
        ({"pmi_mode": "pmi 2"}, ValueError, "pmi_mode must be one word"),
        ({"pmi_mode": 2}, TypeError, "pmi_mode must be a str"),
        ({"cwd": ""}, ValueError, "cwd must be a non-empty path"),
        ({"stdout": 3}, TypeError, "stdout must be a path"),
    ],
)
def test_bad_requests_name_the_value_the_rule_and_the_fix(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        FluxRequest(**kwargs)
    assert words in str(raised.value)


def test_from_resources_maps_executorlibs_names(tmp_path: Path) -> None:
    request = FluxRequest.from_resources(
        cores=4,
        threads_per_core=2,
        gpus_per_core=1,
        num_nodes=2,
        exclusive=True,
        run_time_max=90,
        priority=20,
        cwd=tmp_path,
        pmi_mode="pmi2",
    )
    assert request == FluxRequest(
        tasks=4,
        cores_per_task=2,
        gpus_per_task=1,
        num_nodes=2,
        exclusive=True,
        duration=90,
        urgency=20,
        cwd=str(tmp_path),
        pmi_mode="pmi2",
    )


def test_bad_commands_are_rejected() -> None:
    with pytest.raises(TypeError, match="not a string"):
        flux_job_plan(FluxRequest(), "python -m x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="command is empty"):
        flux_job_plan(FluxRequest(), [])
    with pytest.raises(TypeError, match="convert it with str"):
        flux_job_plan(FluxRequest(), ["python", 3])  # type: ignore[list-item]


def test_failure_text_names_flux_type_and_note() -> None:
    assert FluxJobFailure("timeout", "resource allocation expired").describe() == (
        "flux job exception type=timeout: resource allocation expired"
    )


def test_without_the_bindings_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flux", None)  # import flux raises ImportError
    with pytest.raises(ImportError) as raised:
        import_flux()
    assert str(raised.value) == FLUX_MISSING and "flux-python" in FLUX_MISSING
    spawner = FluxJobSpawner()  # constructing needs no flux
    with pytest.raises(ImportError, match="flux-core"):
        spawner.bootup(["true"])
    assert spawner.describe() == "a flux job not submitted yet"
    assert spawner.shutdown() is None


def test_spawner_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="request must be a FluxRequest"):
        FluxJobSpawner({"cores": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep_stderr"):
        FluxJobSpawner(keep_stderr=-1)
    with pytest.raises(TypeError, match=r"flux_executor must be a flux\.job\.FluxExecutor"):
        FluxJobSpawner(flux_executor=object())

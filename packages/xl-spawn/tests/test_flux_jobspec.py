"""The jobspec dict of a flux job (pure): golden files, every requested resource exactly once (hypothesis), and
agreement with flux's own ``JobspecV1`` builders where the bindings are importable.

Regenerate the golden jobspecs after a deliberate change of the builder (then review the diff):
    .venv/bin/python packages/xl-spawn/tests/test_flux_jobspec.py --regenerate
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import FluxRequest, flux_job_plan, flux_jobspec, flux_jobspec_dict
from xl_spawn.flux import FluxJobPlan

GOLDEN = Path(__file__).parent / "golden" / "flux"
# The golden files must not depend on the machine: a fixed environment and working directory.
ENVIRON = {"PATH": "/usr/bin:/bin", "HOME": "/home/user", "LANG": "C.UTF-8"}
WORKDIR = "/scratch/job"


@st.composite
def requests(draw: st.DrawFn) -> FluxRequest:
    """Any valid request: nodes never outnumber tasks, and exclusive only comes with a node count."""
    tasks = draw(st.integers(1, 16))
    nodes = draw(st.none() | st.integers(1, tasks))
    return FluxRequest(
        tasks=tasks,
        cores_per_task=draw(st.integers(1, 8)),
        gpus_per_task=draw(st.integers(0, 4)),
        num_nodes=nodes,
        exclusive=nodes is not None and draw(st.booleans()),
        duration=draw(st.none() | st.integers(1, 10**6) | st.floats(1e-3, 1e7)),
        urgency=draw(st.none() | st.integers(0, 31)),
        cwd=draw(st.none() | st.just("/some/dir")),
        pmi_mode=draw(st.none() | st.sampled_from(["simple", "pmi2", "simple,pmi2", "cray-pals"])),
        stdout=draw(st.none() | st.just("/some/out")),
        stderr=draw(st.none() | st.just("/some/err")),
    )


commands = st.lists(st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=8), min_size=1)
environments = st.dictionaries(
    st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=6), st.text(max_size=6)
)


def canonical(value: Any) -> str:
    """JSON text with sorted keys: tells 90 from 90.0, which == does not."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def plan_of(request: FluxRequest, command: list[str], nested: bool, environ: dict[str, str]) -> FluxJobPlan:
    return flux_job_plan(request, command, environ=environ, cwd=WORKDIR, nested=nested)


# --- golden files ---


def build_golden(case: dict[str, Any]) -> dict[str, Any]:
    """What a golden file holds besides its input: the jobspec and the submission's other arguments."""
    plan = plan_of(FluxRequest(**case["request"]), case["command"], case["nested"], ENVIRON)
    return {"jobspec": flux_jobspec_dict(plan), "submit": plan.submit_kwargs()}


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("*.json"))


def test_there_are_golden_files() -> None:
    assert len(golden_files()) >= 6


@pytest.mark.parametrize("path", golden_files(), ids=lambda path: path.stem)
def test_golden_jobspec(path: Path) -> None:
    case = json.loads(path.read_text())
    built = build_golden(case)
    assert canonical(built["jobspec"]) == canonical(case["jobspec"]), (
        f"{path.name} changed; see the module docstring to regenerate"
    )
    assert canonical(built["submit"]) == canonical(case["submit"])
    # what goes to flux is JSON: it survives a round trip unchanged
    assert json.loads(json.dumps(built["jobspec"])) == built["jobspec"]


def regenerate() -> None:
    for path in golden_files():
        case = json.loads(path.read_text())
        case.update(build_golden(case))
        path.write_text(json.dumps(case, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        print(f"wrote {path}")


# --- every requested resource exactly once ---


def resources(tree: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for resource in tree:
        yield resource
        yield from resources(resource.get("with", []))


def keyed(value: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in ``value`` (nested dicts and lists)."""
    found: list[Any] = []
    if isinstance(value, dict):
        for name, item in value.items():
            if name == key:
                found.append(item)
            found.extend(keyed(item, key))
    elif isinstance(value, list):
        for item in value:
            found.extend(keyed(item, key))
    return found


@given(request=requests(), command=commands, nested=st.booleans(), environ=environments)
def test_every_requested_resource_appears_exactly_once(
    request: FluxRequest, command: list[str], nested: bool, environ: dict[str, str]
) -> None:
    plan = plan_of(request, command, nested, environ)
    spec = flux_jobspec_dict(plan)
    submit = plan.submit_kwargs()
    without_environment = {**spec, "attributes": {"system": dict(spec["attributes"]["system"], environment={})}}
    tree = list(resources(spec["resources"]))
    of_type = {kind: [r for r in tree if r["type"] == kind] for kind in ("slot", "core", "gpu", "node")}
    assert len(tree) == sum(len(found) for found in of_type.values())  # nothing else is asked for

    (slot,) = of_type["slot"]
    (core,) = of_type["core"]
    assert core["count"] == request.cores_per_task and core in slot["with"]
    assert [gpu["count"] for gpu in of_type["gpu"]] == ([request.gpus_per_task] if request.gpus_per_task else [])
    nodes = of_type["node"]
    assert [node["count"] for node in nodes] == ([request.num_nodes] if request.num_nodes else [])
    assert keyed(spec["resources"], "exclusive") == ([True] if request.exclusive else [])
    # tasks: one task per slot on every node, or (uneven over the nodes) the total
    (task,) = spec["tasks"]
    count = task["count"]
    assert len(count) == 1
    if "total" in count:
        assert count["total"] == request.tasks and request.num_nodes and request.tasks % request.num_nodes
    else:
        assert count == {"per_slot": 1} and slot["count"] * (request.num_nodes or 1) == request.tasks

    system = spec["attributes"]["system"]
    assert keyed(without_environment, "duration") == [0 if request.duration is None else float(request.duration)]
    assert keyed(without_environment, "cwd") == [request.cwd or WORKDIR]
    assert keyed(without_environment, "pmi") == ([request.pmi_mode] if request.pmi_mode else [])
    if request.pmi_mode:
        assert system["shell"]["options"]["pmi"] == request.pmi_mode
    # urgency is not a jobspec field in flux: it travels with the submission, once
    assert keyed(without_environment, "urgency") == []
    assert [value for key, value in submit.items() if key == "urgency"] == (
        [] if request.urgency is None else [request.urgency]
    )
    paths = [item["path"] for item in keyed(without_environment, "output") for item in item.values()]
    assert sorted(paths) == sorted(path for path in (request.stdout, request.stderr) if path is not None)
    assert system["environment"] == environ
    assert task["command"] == (["flux", "broker", *command] if nested else command)
    assert json.loads(json.dumps(spec)) == spec


def test_the_dict_is_fresh_every_time() -> None:
    plan = plan_of(FluxRequest(tasks=2), ["true"], False, ENVIRON)
    first = flux_jobspec_dict(plan)
    first["attributes"]["system"]["environment"]["X"] = "changed"
    first["resources"][0]["count"] = 99
    assert flux_jobspec_dict(plan) == flux_jobspec_dict(plan_of(FluxRequest(tasks=2), ["true"], False, ENVIRON))
    assert "X" not in plan.environment


# --- agreement with flux's own builders ---


def flux_job_or_skip() -> Any:
    try:
        return importlib.import_module("flux.job")
    except ImportError as missing:
        # The bindings come with flux-core (not from PyPI alone): scripts/flux-setup.sh puts them in .venv, and
        # scripts/isolation.sh installs xl-spawn without them on purpose. The same comparison runs against a
        # real instance in tests/flux, which fails rather than skips when flux is missing.
        pytest.skip(f"the flux python bindings are not importable here ({missing}); nothing to compare with")


def by_flux_builders(flux_job: Any, plan: FluxJobPlan) -> dict[str, Any]:
    """The jobspec as flux's factory methods and setters build it from the same plan."""
    build = flux_job.JobspecV1.from_nest_command if plan.nested else flux_job.JobspecV1.from_command
    size = (
        {"num_slots": plan.num_tasks, "cores_per_slot": plan.cores_per_task, "gpus_per_slot": plan.gpus_per_task}
        if plan.nested
        else {"num_tasks": plan.num_tasks, "cores_per_task": plan.cores_per_task, "gpus_per_task": plan.gpus_per_task}
    )
    jobspec = build(
        list(plan.command),
        num_nodes=plan.num_nodes,
        exclusive=plan.exclusive,
        environment=dict(plan.environment),
        cwd=plan.cwd,
        duration=plan.duration,
        output=plan.stdout,
        error=plan.stderr,
        **size,
    )
    for name, value in plan.shell_options:
        jobspec.setattr_shell_option(name, value)
    result: dict[str, Any] = json.loads(jobspec.dumps())
    return result


@given(request=requests(), command=commands, nested=st.booleans(), environ=environments)
def test_the_dict_is_what_flux_builds(
    request: FluxRequest, command: list[str], nested: bool, environ: dict[str, str]
) -> None:
    flux_job = flux_job_or_skip()
    plan = plan_of(request, command, nested, environ)
    assert canonical(flux_jobspec_dict(plan)) == canonical(by_flux_builders(flux_job, plan))
    # JobspecV1 accepts the dict and keeps it as it is
    assert flux_jobspec(plan).dumps(sort_keys=True) == canonical(flux_jobspec_dict(plan))


@pytest.mark.parametrize("path", golden_files(), ids=lambda path: path.stem)
def test_the_golden_files_are_what_flux_builds(path: Path) -> None:
    flux_job = flux_job_or_skip()
    case = json.loads(path.read_text())
    plan = plan_of(FluxRequest(**case["request"]), case["command"], case["nested"], ENVIRON)
    assert canonical(case["jobspec"]) == canonical(by_flux_builders(flux_job, plan))


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate"]:
        regenerate()
    else:
        sys.exit(f"usage: {sys.argv[0]} --regenerate")

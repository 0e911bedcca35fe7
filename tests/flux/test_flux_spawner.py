"""xl_spawn.FluxJobSpawner and flux_jobspec against the real instance (two simulated nodes, 4 cores, no GPUs)."""

from __future__ import annotations

import json
import select
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xl_flux_helpers import FluxInstance
from xl_spawn import FluxJobSpawner, FluxRequest, flux_job_plan, flux_jobspec

JOB_TIMEOUT = 60.0
PY = sys.executable  # the venv's python: mpi4py and the mpich wheel


@pytest.fixture
def spawn() -> Iterator[Callable[..., FluxJobSpawner]]:
    """A factory of spawners that are all shut down at teardown, whatever the test did."""
    made: list[FluxJobSpawner] = []

    def make(request: FluxRequest | None = None, **kwargs: Any) -> FluxJobSpawner:
        spawner = FluxJobSpawner(request, **kwargs)
        made.append(spawner)
        return spawner

    yield make
    for spawner in made:
        spawner.shutdown(wait=True)


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_exit_code_is_the_returncode_and_the_sentinel_turns_readable(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn()
    spawner.bootup(["sh", "-c", "sleep 0.5; exit 7"])
    assert isinstance(spawner.pid, int) and spawner.pid > 0
    assert spawner.poll() is None
    assert not readable(spawner.sentinel, 0.1)
    assert readable(spawner.sentinel, JOB_TIMEOUT)
    assert spawner.wait(timeout=5) == 7
    assert spawner.poll() == 7 and spawner.returncode == 7
    assert spawner.failure is None
    assert spawner.describe().startswith("flux job ")
    spawner.shutdown()
    with pytest.raises(RuntimeError, match="closed by shutdown"):
        _ = spawner.sentinel


def test_wait_times_out_while_the_job_runs(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn()
    spawner.bootup(["sleep", "30"])
    with pytest.raises(Exception, match="timed out"):
        spawner.wait(timeout=0.3)


def test_run_time_max_ends_the_job_as_a_timeout(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn(FluxRequest(duration=1))
    started = time.monotonic()
    spawner.bootup(["sleep", "30"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 142  # 128 + SIGALRM, as flux run reports it
    assert time.monotonic() - started < 10
    assert spawner.failure is not None and spawner.failure.type == "timeout"
    assert "type=timeout" in spawner.describe()
    assert "resource allocation expired" in spawner.describe()
    assert "type=timeout" in spawner.stderr_tail()


def test_shutdown_cancels_a_running_job(spawn: Callable[..., FluxJobSpawner], flux_instance: FluxInstance) -> None:
    spawner = spawn()
    spawner.bootup(["sleep", "60"])
    started = time.monotonic()
    assert spawner.shutdown(wait=True) == 143  # 128 + SIGTERM: flux cancelled it
    assert time.monotonic() - started < 10
    assert spawner.failure is not None and spawner.failure.type == "cancel"
    state = flux_instance.run(["jobs", "-n", "-o", "{status}", str(spawner.pid)]).stdout.strip()
    assert state == "CANCELED"
    assert spawner.shutdown() == 143  # idempotent


def test_shutdown_without_waiting_cancels_in_the_background(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn()
    spawner.bootup(["sleep", "60"])
    fd = spawner.sentinel
    assert spawner.shutdown(wait=False) is None
    assert readable(fd, JOB_TIMEOUT) or spawner.returncode is not None
    assert spawner.wait(timeout=JOB_TIMEOUT) == 143


def test_cwd_and_env_reach_the_job(spawn: Callable[..., FluxJobSpawner], tmp_path: Path) -> None:
    workdir = tmp_path / "made" / "by" / "bootup"
    spawner = spawn(cwd=workdir, env={"XL_FLUX_TEST": "from the spawner"})
    spawner.bootup(["sh", "-c", 'pwd > where.txt; echo "$XL_FLUX_TEST" > env.txt'])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 0
    assert (workdir / "where.txt").read_text().strip() == str(workdir)
    assert (workdir / "env.txt").read_text().strip() == "from the spawner"


def test_the_requests_cwd_wins_over_the_spawners(spawn: Callable[..., FluxJobSpawner], tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    spawner = spawn(FluxRequest(cwd=str(tmp_path / "a")), cwd=tmp_path / "b")
    spawner.bootup(["sh", "-c", "pwd > where.txt"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 0
    assert (tmp_path / "a" / "where.txt").read_text().strip() == str(tmp_path / "a")


def test_log_files_hold_stdout_and_stderr(spawn: Callable[..., FluxJobSpawner], tmp_path: Path) -> None:
    spawner = spawn(cwd=tmp_path, log_files=True)
    spawner.bootup(["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 3
    assert (tmp_path / "flux.out").read_text() == "to-out\n"
    assert "to-err" in (tmp_path / "flux.err").read_text()
    assert "to-err" in spawner.stderr_tail()


def test_stderr_tail_without_log_files_comes_from_the_instance(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn(keep_stderr=11)  # "last-words\n"
    spawner.bootup(["sh", "-c", "echo 0123456789-last-words >&2; exit 1"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 1
    assert spawner.stderr_tail().strip() == "last-words"


def test_two_tasks_are_two_mpi_ranks(spawn: Callable[..., FluxJobSpawner], tmp_path: Path) -> None:
    code = (
        "from mpi4py import MPI; import os; c = MPI.COMM_WORLD; "
        "open(f'rank{c.Get_rank()}.txt', 'w').write(f'{c.Get_rank()} {c.Get_size()}')"
    )
    spawner = spawn(FluxRequest(tasks=2), cwd=tmp_path)
    spawner.bootup([PY, "-c", code])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 0, spawner.stderr_tail()
    assert sorted(p.read_text() for p in tmp_path.glob("rank*.txt")) == ["0 2", "1 2"]


def test_two_nodes_put_one_rank_on_each_broker(spawn: Callable[..., FluxJobSpawner], tmp_path: Path) -> None:
    script = 'echo "$FLUX_TASK_RANK $(flux getattr rank)" > "task$FLUX_TASK_RANK.txt"'
    spawner = spawn(FluxRequest(tasks=2, num_nodes=2), cwd=tmp_path)
    spawner.bootup(["sh", "-c", script])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 0, spawner.stderr_tail()
    lines = sorted(p.read_text().split() for p in tmp_path.glob("task*.txt"))
    assert [task for task, _ in lines] == ["0", "1"]
    assert sorted(broker for _, broker in lines) == ["0", "1"]  # one task on each simulated node


def test_exclusive_nodes(spawn: Callable[..., FluxJobSpawner], tmp_path: Path) -> None:
    spawner = spawn(FluxRequest(tasks=1, num_nodes=1, exclusive=True), cwd=tmp_path)
    spawner.bootup(["sh", "-c", "flux job info $FLUX_JOB_ID R > R.json"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 0, spawner.stderr_tail()
    cores = json.loads((tmp_path / "R.json").read_text())["execution"]["R_lite"][0]["children"]["core"]
    assert cores == "0-1"  # the whole simulated node, not the one core a task asks for


def test_an_unsatisfiable_request_fails_fast_with_flux_reason(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn(FluxRequest(tasks=64))
    started = time.monotonic()
    spawner.bootup(["true"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 1
    assert time.monotonic() - started < 5
    assert spawner.failure is not None and spawner.failure.type == "alloc"
    assert "unsatisfiable request" in spawner.describe()
    assert "64 slot(s)" in spawner.describe()


def test_gpus_on_a_gpu_less_instance_are_unsatisfiable(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn(FluxRequest(gpus_per_task=1))
    spawner.bootup(["true"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 1
    assert "GPU" in spawner.describe()


def test_a_missing_program_is_an_exec_failure(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn()
    spawner.bootup(["/nonexistent/program"])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 127
    assert "type=exec" in spawner.describe()


def test_urgency_is_submitted(spawn: Callable[..., FluxJobSpawner], flux_instance: FluxInstance) -> None:
    spawner = spawn(FluxRequest(urgency=0))  # urgency 0 holds the job
    spawner.bootup(["true"])
    urgency = flux_instance.run(["jobs", "-n", "-o", "{urgency} {state}", str(spawner.pid)]).stdout.split()
    assert urgency[0] == "0" and urgency[1] != "INACTIVE"
    assert spawner.shutdown() == 143


def test_a_callers_flux_executor_is_used(spawn: Callable[..., FluxJobSpawner]) -> None:
    import flux.job

    with flux.job.FluxExecutor() as executor:
        spawner = spawn(flux_executor=executor)
        spawner.bootup(["true"])
        assert spawner.wait(timeout=JOB_TIMEOUT) == 0


def test_a_nested_job_is_an_instance_of_its_own(
    spawn: Callable[..., FluxJobSpawner], tmp_path: Path, flux_instance: FluxInstance
) -> None:
    spawner = spawn(FluxRequest(tasks=2), cwd=tmp_path, nested=True)
    spawner.bootup(["sh", "-c", 'echo "$FLUX_URI $(flux getattr instance-level) $(flux resource info)" > n.txt'])
    assert spawner.wait(timeout=JOB_TIMEOUT) == 0, spawner.stderr_tail()
    uri, level, *resources = (tmp_path / "n.txt").read_text().split()
    assert uri != flux_instance.uri and level == "1"
    assert " ".join(resources).startswith("1 Nodes, 2 Cores")


def test_bootup_rules(spawn: Callable[..., FluxJobSpawner]) -> None:
    spawner = spawn()
    with pytest.raises(RuntimeError, match="call bootup"):
        _ = spawner.pid
    with pytest.raises(ValueError, match="non-empty sequence"):
        spawner.bootup("true")  # type: ignore[arg-type]
    spawner.bootup(["true"])
    with pytest.raises(RuntimeError, match="already called"):
        spawner.bootup(["true"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tasks=st.integers(1, 8),
    cores=st.integers(1, 4),
    gpus=st.integers(0, 2),
    nodes=st.none() | st.integers(1, 8),
    exclusive=st.booleans(),
    duration=st.none() | st.floats(0.5, 1e6),
    pmi=st.none() | st.sampled_from(["simple", "pmi2", "simple,pmi2"]),
)
def test_every_requested_resource_appears_once_in_the_jobspec(
    tasks: int,
    cores: int,
    gpus: int,
    nodes: int | None,
    exclusive: bool,
    duration: float | None,
    pmi: str | None,
    tmp_path: Path,
) -> None:
    nodes = None if nodes is None else min(nodes, tasks)
    exclusive = exclusive and nodes is not None
    request = FluxRequest(
        tasks=tasks,
        cores_per_task=cores,
        gpus_per_task=gpus,
        num_nodes=nodes,
        exclusive=exclusive,
        duration=duration,
        pmi_mode=pmi,
        cwd=str(tmp_path),
    )
    spec = json.loads(flux_jobspec(flux_job_plan(request, ["prog", "arg"], env={"A": "1"})).dumps())
    text = json.dumps(spec["resources"])
    assert text.count('"core"') == 1 and text.count('"slot"') == 1
    assert text.count('"gpu"') == (1 if gpus else 0)
    assert text.count('"node"') == (1 if nodes is not None else 0)
    slot = spec["resources"][0] if nodes is None else spec["resources"][0]["with"][0]
    if nodes is not None:
        assert spec["resources"][0]["count"] == nodes
        assert spec["resources"][0].get("exclusive", False) is exclusive
    count = spec["tasks"][0]["count"]  # per_slot: one task per slot (slots per node x nodes), or a total
    assert count.get("total", slot["count"] * (nodes or 1) * count.get("per_slot", 0)) == tasks
    expected = {"core": cores, **({"gpu": gpus} if gpus else {})}
    assert {child["type"]: child["count"] for child in slot["with"]} == expected
    system = spec["attributes"]["system"]
    assert system["cwd"] == str(tmp_path)
    assert system["environment"]["A"] == "1"
    assert system.get("duration", 0) == (duration or 0)
    assert system.get("shell", {}).get("options", {}).get("pmi") == pmi
    assert spec["tasks"][0]["command"] == ["prog", "arg"]

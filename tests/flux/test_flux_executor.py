"""FluxJobExecutor and FluxClusterExecutor against the real instance (``flux start --test-size=2``: two simulated
nodes of this machine's cores, no GPUs): what issue 16 asks of them, as a user would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from executorlib import FluxClusterExecutor, FluxJobExecutor
from executorlib.api import ResourceDictError
from executorlib.errors import ExecutorlibSocketError
from xl_flux_helpers import FluxInstance

TIMEOUT = 60.0  # each test's own limit is pytest-timeout's 110 s
PY = sys.executable


# -- functions run in the jobs (this module is importable by the workers: tests/flux is on their path) -----------


def broker_rank() -> tuple[int, int]:
    """(this rank's broker, this rank) inside a flux job: the broker is the node the rank runs on."""
    import flux
    from mpi4py import MPI

    return int(flux.Flux().attr_get("rank")), MPI.COMM_WORLD.Get_rank()


def inc(x: int) -> int:
    return x + 1


def sleep_then(seconds: float, marker: str | None = None) -> float:
    if marker is not None:
        Path(marker).write_text(os.environ.get("FLUX_JOB_ID") or "started")  # a batch script has no FLUX_JOB_ID
    time.sleep(seconds)
    return seconds


def die_once(marker: str) -> str:
    """Kill the worker the first time (no exception: the process is gone), succeed when retried."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(3)
    return "retried"


def count_run(path: str, seconds: float) -> float:
    with open(path, "a") as runs:
        runs.write("ran\n")
    time.sleep(seconds)
    return seconds


def squares_in_a_nested_executor(n: int) -> list[int]:
    with FluxJobExecutor(max_workers=2) as exe:
        return [exe.submit(inc, i).result(timeout=60) for i in range(n)]


def memory(x: int, offset: int = 0) -> int:
    return x + offset


def init() -> dict[str, int]:
    return {"offset": 100}


# -- helpers -----------------------------------------------------------------------------------------------------


@pytest.fixture
def executors() -> Iterator[list[Any]]:
    """Executors made by a test, shut down (cancelling what is left) at teardown whatever it did."""
    made: list[Any] = []
    yield made
    for exe in made:
        exe.shutdown(wait=True, cancel_futures=True)


def flux_import_id(job_id: str) -> int:
    import flux.job

    return int(flux.job.JobID(job_id))


def job_state(flux_instance: FluxInstance, job_id: str) -> str:
    done = flux_instance.run(["jobs", "--no-header", "--format={status_abbrev}", job_id], timeout=30)
    return done.stdout.strip()


def wait_for_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


# -- FluxJobExecutor ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [False, True], ids=["per-call", "block"])
def test_two_nodes_run_one_rank_each(executors: list[Any], block: bool) -> None:
    resources = {"cores": 2, "num_nodes": 2}
    exe = FluxJobExecutor(max_workers=1, block_allocation=block, resource_dict=resources if block else None)
    executors.append(exe)
    result = exe.submit(broker_rank, resource_dict={} if block else resources).result(timeout=TIMEOUT)
    assert sorted(broker for broker, _ in result) == [0, 1]  # one rank on each simulated node
    assert sorted(rank for _, rank in result) == [0, 1]


def test_issue_example_four_mpi_calls_two_at_a_time(executors: list[Any]) -> None:
    exe = FluxJobExecutor(max_workers=2)
    executors.append(exe)
    futures = [exe.submit(broker_rank, resource_dict={"cores": 2}) for _ in range(4)]
    for future in futures:
        assert sorted(rank for _, rank in future.result(timeout=TIMEOUT)) == [0, 1]


def test_block_allocation_with_init_function(executors: list[Any]) -> None:
    exe = FluxJobExecutor(max_cores=4, block_allocation=True, init_function=init)
    executors.append(exe)
    assert [f.result(timeout=TIMEOUT) for f in [exe.submit(memory, i) for i in range(6)]] == list(range(100, 106))


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ({"cores": 5}, ["5 cores", "4 core(s)", "2 node(s)"]),
        ({"cores": 2, "threads_per_core": 3}, ["6 cores", "4 core(s)"]),
        ({"cores": 3, "num_nodes": 3}, ["3 nodes", "2 node(s)"]),
        ({"gpus_per_core": 1}, ["1 GPUs", "0 GPU(s)"]),
    ],
)
def test_a_request_larger_than_the_instance_fails_at_submit(
    executors: list[Any], resources: dict[str, int], words: list[str]
) -> None:
    exe = FluxJobExecutor()
    executors.append(exe)
    started = time.monotonic()
    with pytest.raises(ResourceDictError) as error:
        exe.submit(inc, 1, resource_dict=resources)
    assert time.monotonic() - started < 1.0
    for word in words:
        assert word in str(error.value)


def test_flux_rules_are_checked_at_submit(executors: list[Any]) -> None:
    exe = FluxJobExecutor()
    executors.append(exe)
    with pytest.raises(ResourceDictError, match="exclusive=True needs num_nodes"):
        exe.submit(inc, 1, resource_dict={"exclusive": True})
    with pytest.raises(ResourceDictError, match="slurm_cmd_args"):
        exe.submit(inc, 1, resource_dict={"slurm_cmd_args": ["--mem=1G"]})
    with pytest.raises(ValueError, match="'core'"):  # unknown: pydantic's ValidationError where it is installed
        exe.submit(inc, 1, resource_dict={"core": 2})


def test_run_time_max_ends_the_job_and_names_flux_timeout(executors: list[Any]) -> None:
    exe = FluxJobExecutor(max_workers=1)
    executors.append(exe)
    started = time.monotonic()
    future = exe.submit(sleep_then, 60, resource_dict={"run_time_max": 2})
    with pytest.raises(ExecutorlibSocketError, match="type=timeout") as error:
        future.result(timeout=TIMEOUT)
    # Flux ends the job 2 s after it started; its start took well under a second, the Future fails within 2 s more.
    assert time.monotonic() - started < 2 + 3 + 2, error.value
    assert "flux job" in str(error.value)
    assert exe.submit(inc, 1).result(timeout=TIMEOUT) == 2  # the executor goes on


def test_flux_cancel_of_a_job_fails_its_future(
    executors: list[Any], flux_instance: FluxInstance, tmp_path: Path
) -> None:
    exe = FluxJobExecutor(max_workers=1)
    executors.append(exe)
    marker = tmp_path / "job-id"
    future = exe.submit(sleep_then, 60, str(marker))
    job_id = wait_for_file(marker, TIMEOUT)
    flux_instance.run(["cancel", job_id], timeout=30)
    with pytest.raises(ExecutorlibSocketError, match=r"flux job exception (type=)?cancel"):
        future.result(timeout=30)


def test_a_dead_pool_worker_is_restarted_per_restart_limit(executors: list[Any], tmp_path: Path) -> None:
    exe = FluxJobExecutor(max_workers=1, block_allocation=True, restart_limit=1)
    executors.append(exe)
    assert exe.submit(die_once, str(tmp_path / "first")).result(timeout=TIMEOUT) == "retried"
    assert exe.submit(inc, 1).result(timeout=TIMEOUT) == 2
    # The one restart is used up: the next death fails its task, and then every task.
    with pytest.raises(ExecutorlibSocketError, match="died"):
        exe.submit(die_once, str(tmp_path / "second")).result(timeout=TIMEOUT)


def test_flux_log_files_and_cwd(executors: list[Any], tmp_path: Path) -> None:
    exe = FluxJobExecutor(max_workers=1, flux_log_files=True)
    executors.append(exe)
    work = tmp_path / "work"
    assert exe.submit(os.getcwd, resource_dict={"cwd": str(work)}).result(timeout=TIMEOUT) == str(work)
    exe.shutdown(wait=True)
    logs = sorted(path.name for path in work.iterdir())
    assert len(logs) == 2 and logs[0].startswith("flux_") and logs[0].endswith(".err") and logs[1].endswith(".out")


def test_a_flux_executor_of_the_caller_is_used(executors: list[Any]) -> None:
    import flux.job

    with flux.job.FluxExecutor() as mine:
        exe = FluxJobExecutor(max_workers=1, flux_executor=mine)
        executors.append(exe)
        assert exe.submit(inc, 41).result(timeout=TIMEOUT) == 42
        exe.shutdown(wait=True)


def test_nesting_lets_a_function_open_an_executor_inside_its_job(executors: list[Any]) -> None:
    exe = FluxJobExecutor(max_workers=1, flux_executor_nesting=True)
    executors.append(exe)
    assert exe.submit(squares_in_a_nested_executor, 3).result(timeout=TIMEOUT) == [1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"openmpi_oversubscribe": True}, "no oversubscription"),
        ({"pmi_mode": "pmi x"}, "pmi_mode must be"),
        ({"max_cores": 64}, "max_cores=64 is more than the flux instance"),
        ({"wait": False}, "wait=False"),
        ({"resource_dict": {"submission_template": "x"}}, "submission_template"),
        ({"max_workers": 3, "block_allocation": True, "resource_dict": {"cores": 2}}, "need 6 cores"),
    ],
)
def test_bad_construction_is_a_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        exe = FluxJobExecutor(**kwargs)
        exe.shutdown(wait=True)


def test_outside_any_instance_the_constructor_names_flux_uri_and_flux_start(tmp_path: Path) -> None:
    env = {**os.environ, "FLUX_URI": f"local://{tmp_path}/no-broker"}
    script = "from executorlib import {cls}\ntry:\n    {cls}()\nexcept RuntimeError as error:\n    print(error)\n"
    for cls in ("FluxJobExecutor", "FluxClusterExecutor"):
        done = subprocess.run(
            [PY, "-c", script.format(cls=cls)], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert "FLUX_URI" in done.stdout and "flux start" in done.stdout, done.stdout


KILLED_OWNER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {here!r})
    from executorlib import FluxJobExecutor
    from test_flux_executor import sleep_then
    exe = FluxJobExecutor(max_workers=2, block_allocation={block})
    futures = [exe.submit(sleep_then, 300, {marker!r} + str(i)) for i in range(2)]
    time.sleep(300)
    """
)


@pytest.mark.parametrize("block", [False, True], ids=["per-call", "block"])
def test_killing_the_executors_process_leaves_no_job_running(
    flux_instance: FluxInstance, tmp_path: Path, block: bool
) -> None:
    marker = str(tmp_path / "job-")
    code = KILLED_OWNER.format(here=str(Path(__file__).parent), block=block, marker=marker)
    owner = subprocess.Popen([PY, "-c", code], cwd=tmp_path, start_new_session=True)
    try:
        jobs = [wait_for_file(Path(f"{marker}{i}"), TIMEOUT) for i in range(2)]
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(timeout=30)
    killed = time.monotonic()
    while time.monotonic() - killed < 5.0 and any(job_state(flux_instance, job) in ("R", "C") for job in jobs):
        time.sleep(0.2)
    states = {job: job_state(flux_instance, job) for job in jobs}
    assert all(state not in ("R", "C") for state in states.values()), f"still running 5 s after the kill: {states}"


def test_graph_mode_needs_no_instance(tmp_path: Path) -> None:
    picture = tmp_path / "graph.json"
    env = {**os.environ, "FLUX_URI": f"local://{tmp_path}/no-broker"}
    code = (
        "from executorlib import FluxJobExecutor\n"
        f"with FluxJobExecutor(export_workflow_filename={str(picture)!r}) as exe:\n"
        "    exe.submit(sum, [exe.submit(sum, [1, 1]), 2])\n"
    )
    done = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(picture.read_text())


# -- FluxClusterExecutor -----------------------------------------------------------------------------------------


def test_cluster_issue_example_with_dependencies(executors: list[Any], tmp_path: Path) -> None:
    exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cache"))
    executors.append(exe)
    b = exe.submit(sum, [exe.submit(sum, [1, 1]), 2], resource_dict={"cores": 1, "run_time_max": 60})
    assert b.result(timeout=TIMEOUT) == 4


def test_cluster_job_can_open_a_flux_job_executor(executors: list[Any], tmp_path: Path) -> None:
    exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cache"))
    executors.append(exe)
    assert exe.submit(squares_in_a_nested_executor, 3).result(timeout=TIMEOUT) == [1, 2, 3]


def test_cluster_mpi_task_runs_on_its_ranks(executors: list[Any], tmp_path: Path) -> None:
    exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cache"))
    executors.append(exe)
    result = exe.submit(broker_rank, resource_dict={"cores": 2, "num_nodes": 2}).result(timeout=TIMEOUT)
    assert sorted(rank for _, rank in result) == [0, 1]


def test_cluster_run_time_max_fails_the_future_with_flux_state(executors: list[Any], tmp_path: Path) -> None:
    exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cache"))
    executors.append(exe)
    future = exe.submit(sleep_then, 120, resource_dict={"run_time_max": 2})
    with pytest.raises(Exception, match="TIMEOUT") as error:
        future.result(timeout=TIMEOUT)
    assert "job" in str(error.value)


def test_cluster_flux_cancel_fails_the_future(
    executors: list[Any], flux_instance: FluxInstance, tmp_path: Path
) -> None:
    exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cancel-me"))  # the job name is the directory's
    executors.append(exe)
    marker = tmp_path / "started"
    future = exe.submit(sleep_then, 120, str(marker))
    wait_for_file(marker, TIMEOUT)  # the function runs in its batch job
    listing = flux_instance.run(["jobs", "--no-header", "--filter=running", "--format={name} {id}"], timeout=30)
    [job_id] = [line.split()[1] for line in listing.stdout.splitlines() if line.split()[0] == "cancel-me"]
    flux_instance.run(["cancel", job_id], timeout=30)
    with pytest.raises(Exception, match="CANCELLED") as error:
        future.result(timeout=TIMEOUT)
    assert str(flux_import_id(job_id)) in str(error.value) or job_id in str(error.value)


def test_cluster_shutdown_without_waiting_and_reconnect(tmp_path: Path) -> None:
    cache, runs = str(tmp_path / "cache"), str(tmp_path / "runs")
    first = FluxClusterExecutor(cache_directory=cache)
    first.submit(count_run, runs, 3)
    started = time.monotonic()
    first.shutdown(wait=False)
    assert time.monotonic() - started < 2.0  # the job keeps running without us
    with FluxClusterExecutor(cache_directory=cache) as second:  # a later process on the same directory
        assert second.submit(count_run, runs, 3).result(timeout=TIMEOUT) == 3
    assert Path(runs).read_text().count("ran") == 1  # re-attached to the job, not run twice


def test_cluster_block_allocation(executors: list[Any], tmp_path: Path) -> None:
    exe = FluxClusterExecutor(
        cache_directory=str(tmp_path / "cache"), block_allocation=True, max_workers=1, init_function=init
    )
    executors.append(exe)
    assert [exe.submit(memory, i).result(timeout=TIMEOUT) for i in range(3)] == [100, 101, 102]


def test_cluster_dry_run_shows_the_flux_batch_script(tmp_path: Path) -> None:
    exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cache"), pmi_mode="pmi2")
    try:
        script = exe.dry_run(
            inc, 1, resource_dict={"cores": 2, "threads_per_core": 2, "run_time_max": 90, "priority": 20}
        )
    finally:
        exe.shutdown(wait=True)
    for line in ("# flux: --nslots=2", "# flux: --cores-per-slot=2", "# flux: --time-limit=90s", "--urgency=20"):
        assert line in script
    assert "flux run --ntasks=2 --cores-per-task=2 -o pmi=pmi2" in script
    assert not list((tmp_path / "cache").glob("*_i.h5"))  # nothing written


def test_cluster_gpus_per_core_is_honoured_not_dropped(tmp_path: Path) -> None:
    exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cache"))
    try:
        with pytest.raises(ResourceDictError, match="GPU"):  # the instance has none: rejected, not dropped
            exe.submit(inc, 1, resource_dict={"gpus_per_core": 1})
    finally:
        exe.shutdown(wait=True)


def test_cluster_misspelt_key_warns_at_construction_with_the_closest_key(tmp_path: Path) -> None:
    """As in executorlib 1.x (compat-1x.md §12): file mode warns and hands the key to the template."""
    with pytest.warns(UserWarning, match="cores"):
        exe = FluxClusterExecutor(cache_directory=str(tmp_path / "cache"), resource_dict={"core": 2})
    exe.shutdown(wait=True)


FLUX_QUEUE_TEMPLATE = """#!/bin/bash
# flux: --job-name={{job_name}}
# flux: --output=time.out
# flux: --nslots={{cores}}
{%- if run_time_max %}
# flux: --time-limit={{run_time_max}}s
{%- endif %}
{%- if dependency %}
{%- for jobid in dependency %}
# flux: --dependency=afterok:{{jobid}}
{%- endfor %}
{%- endif %}

{{command}}
"""


def test_cluster_with_a_pysqa_config_directory(executors: list[Any], tmp_path: Path) -> None:
    """A pysqa configuration directory (``queue_type: FLUX``): pysqa submits with its template; the dependency
    reaches the template (as ``dependency``, the name executorlib's docs use)."""
    queues = tmp_path / "queues"
    queues.mkdir()
    (queues / "queue.yaml").write_text(
        "queue_type: FLUX\nqueue_primary: flux\nqueues:\n"
        "  flux: {cores_max: 4, cores_min: 1, run_time_max: 3600, script: flux.sh}\n"
    )
    (queues / "flux.sh").write_text(FLUX_QUEUE_TEMPLATE)
    cache = tmp_path / "cache"
    exe = FluxClusterExecutor(cache_directory=str(cache), pysqa_config_directory=str(queues))
    executors.append(exe)
    first = exe.submit(sleep_then, 2)
    second = exe.submit(memory, first, 3)
    assert second.result(timeout=TIMEOUT) == 5 and first.result(timeout=TIMEOUT) == 2
    [script] = cache.glob("memory*/run_queue.sh")
    assert "# flux: --dependency=afterok:" in script.read_text()


@pytest.mark.parametrize("block", [False, True], ids=["per-call", "block"])
def test_info_has_executorlib_1x_shape(executors: list[Any], block: bool) -> None:
    """The keys and values executorlib 1.11's FluxJobExecutor shows (recorded from 1.11.0 in this instance); the
    spawner is ours (xl_spawn.FluxJobSpawner), and info is None after shutdown."""
    from xl_spawn import FluxJobSpawner

    exe = FluxJobExecutor(max_workers=2, block_allocation=block, resource_dict={"cwd": "/tmp"}, flux_log_files=True)
    executors.append(exe)
    expected: dict[str, Any] = {
        "cores": 1,
        "threads_per_core": 1,
        "gpus_per_core": 0,
        "cwd": "/tmp",
        "cache_directory": None,
        "hostname_localhost": None,
        "log_obj_size": False,
        "pmi_mode": None,
        "flux_executor": None,
        "flux_executor_nesting": False,
        "flux_log_files": True,
        "spawner": FluxJobSpawner,
        "max_workers": 2,
    }
    if block:
        expected.update(init_function=None, queue_join_on_shutdown=False, restart_limit=0)
    else:
        expected["max_cores"] = None
    assert exe.info == expected
    exe.shutdown(wait=True)
    assert exe.info is None

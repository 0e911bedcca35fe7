"""SlurmClusterExecutor against the real test cluster: the upstream docs page's examples as tests.

One sbatch job per call; every blocking call has a timeout. The TIMEOUT test reuses nothing and takes 60-90 s
(the cluster's smallest time limit is one minute): it is the only one of its kind.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xl_slurm_helpers import SlurmCluster

TIMEOUT = 120

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


def add(a: int, b: int) -> int:
    return a + b


def echo(i: Any) -> Any:
    return i


def fail_after(seconds: float) -> None:
    time.sleep(seconds)
    raise ValueError("upstream raised")


def sleep_and_return(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def count_and_add(marker: str, a: int, b: int) -> int:
    with open(marker, "a") as handle:
        handle.write("ran\n")
    return a + b


def mpi_calc(i: int) -> tuple[int, int, int]:
    from mpi4py import MPI

    return i, MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def executor(slurm_cluster: SlurmCluster, cache: Path) -> Iterator[Any]:
    from executorlib import SlurmClusterExecutor

    exe = SlurmClusterExecutor(cache_directory=str(cache))
    yield exe
    exe.shutdown(wait=False, cancel_futures=True)


def test_basic_and_dependencies(executor: Any, cache: Path) -> None:
    from executorlib import get_cache_data

    futures = [executor.submit(sum, [i, i]) for i in range(1, 4)]
    future: Any = 0
    for i in range(4, 8):
        future = executor.submit(add, i, future)
    assert [f.result(timeout=TIMEOUT) for f in futures] == [2, 4, 6]
    assert future.result(timeout=TIMEOUT) == 22
    entries = get_cache_data(str(cache))
    assert len(entries) == 7 and all(isinstance(e["queue_id"], int) for e in entries)
    # the chain's jobs were submitted at once, each after its upstream: afterok with the upstream id
    scripts = sorted((cache).glob("add*/run_queue.sh"))
    assert sum("--dependency=afterok:" in s.read_text() for s in scripts) == 3


def where() -> str:
    import os

    return os.getcwd()


def test_the_job_runs_in_its_cwd_resolved_at_submit_or_in_its_key_folder(
    executor: Any, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compat-1x.md §5.1: the job script and its log go to abspath(cwd), and the job runs there; without a cwd,
    to <cache>/<key>/."""
    monkeypatch.chdir(tmp_path)
    assert executor.submit(where, resource_dict={"cwd": "work", "cache_key": "inwork"}).result(timeout=TIMEOUT) == str(
        tmp_path / "work"
    )
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["run_queue.sh", "time.out"]
    assert executor.submit(where, resource_dict={"cache_key": "own"}).result(timeout=TIMEOUT) == str(cache / "own")
    assert sorted(p.name for p in cache.iterdir()) == ["inwork_o.h5", "own", "own_o.h5"]  # no stray <key>/work


def test_docs_template_with_resource_dict(executor: Any, slurm_cluster: SlurmCluster) -> None:
    resource_dict = {"submission_template": DOCS_TEMPLATE, "run_time_max": 180, "partition": slurm_cluster.partition}
    first = executor.submit(sum, [4, 4], resource_dict=resource_dict)
    second = executor.submit(add, first, first, resource_dict=resource_dict)
    assert first.result(timeout=TIMEOUT) == 8 and second.result(timeout=TIMEOUT) == 16


def test_pysqa_config_directory_with_a_docs_style_queue_template(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """A pysqa configuration directory (queue.yaml + template): pysqa submits, and the dependency reaches a template
    that uses the docs' ``dependency`` variable (pysqa itself renders only ``dependency_list``)."""
    from executorlib import SlurmClusterExecutor

    queues = tmp_path / "queues"
    queues.mkdir()
    (queues / "queue.yaml").write_text(
        f"queue_type: SLURM\nqueue_primary: {slurm_cluster.partition}\nqueues:\n"
        f"  {slurm_cluster.partition}: {{cores_max: 4, cores_min: 1, run_time_max: 3600, script: slurm.sh}}\n"
    )
    (queues / "slurm.sh").write_text(DOCS_TEMPLATE.replace("{{partition}}", slurm_cluster.partition))
    cache = tmp_path / "cache"
    with SlurmClusterExecutor(cache_directory=str(cache), pysqa_config_directory=str(queues)) as exe:
        first = exe.submit(sleep_and_return, 2, 5)
        second = exe.submit(add, first, 2)
        assert second.result(timeout=TIMEOUT) == 7 and first.result(timeout=TIMEOUT) == 5
    [script] = cache.glob("add*/run_queue.sh")
    assert f"#SBATCH --dependency=afterok:{get_queue_id(cache, 'sleep_and_return')}" in script.read_text()


def get_queue_id(cache: Path, function: str) -> int:
    from executorlib import get_cache_data

    [entry] = [e for e in get_cache_data(str(cache)) if e["function"].__name__ == function]
    return int(entry["queue_id"])


def test_mpi_job_with_two_cores(slurm_cluster: SlurmCluster, cache: Path) -> None:
    from executorlib import SlurmClusterExecutor

    with SlurmClusterExecutor(cache_directory=str(cache), pmi_mode="pmi2") as exe:
        future = exe.submit(mpi_calc, 3, resource_dict={"cores": 2})
        assert future.result(timeout=TIMEOUT) == [(3, 2, 0), (3, 2, 1)]  # every rank, in rank order


def test_submission_error_carries_sbatchs_message_and_is_not_cached(executor: Any, cache: Path) -> None:
    future = executor.submit(echo, 1, resource_dict={"partition": "nope"})
    error = future.exception(timeout=TIMEOUT)
    assert isinstance(error, subprocess.CalledProcessError)
    assert "invalid partition" in error.output.lower() and "invalid partition" in str(error).lower()
    assert not list(cache.glob("*.h5"))
    assert executor.submit(echo, 1).result(timeout=TIMEOUT) == 1


def test_dry_run_returns_the_script(executor: Any) -> None:
    script = executor.dry_run(add, 1, 2, resource_dict={"run_time_max": 61, "partition": "debug"})
    assert "#SBATCH --time=2" in script and "#SBATCH --partition=debug" in script
    assert "xl_cache.worker" in script


@pytest.mark.parametrize(
    ("key", "suggestion"), [("corez", "cores"), ("thread_per_core", "threads_per_core"), ("cach_key", "cache_key")]
)
def test_a_misspelt_key_warns_and_is_handed_to_the_job_script_as_in_1x(
    executor: Any, cache: Path, key: str, suggestion: str
) -> None:
    from executorlib import SlurmClusterExecutor
    from executorlib.errors import ResourceKeyWarning

    for attempt in (
        lambda: executor.dry_run(add, 1, 2, resource_dict={key: 2}),
        lambda: SlurmClusterExecutor(cache_directory=str(cache), resource_dict={key: 2}).shutdown(),
    ):
        with pytest.warns(ResourceKeyWarning) as record:
            attempt()
        message = str(record[0].message)
        assert repr(key) in message and f"Did you mean {suggestion!r}?" in message, message
        assert "default SLURM job script template" in message and "Fix the spelling" in message, message
    assert not list(cache.glob("*.h5"))  # nothing was submitted


def test_a_variable_of_a_custom_template_reaches_the_job_script(executor: Any) -> None:
    template = DOCS_TEMPLATE.replace("#SBATCH --ntasks", "#SBATCH --account={{ account }}\n#SBATCH --ntasks")
    resource_dict = {"submission_template": template, "account": "acme", "partition": "debug"}
    script = executor.dry_run(add, 1, 2, resource_dict=resource_dict)
    assert "#SBATCH --account=acme" in script
    with pytest.warns(UserWarning, match=r"'account'.*neither an executorlib resource nor a variable"):
        executor.dry_run(add, 1, 2, resource_dict={"account": "acme"})  # the default template has no account


def test_scancel_and_a_failed_upstream_job(executor: Any, cache: Path) -> None:
    from executorlib.errors import JobFailedError

    doomed = executor.submit(sleep_and_return, 120, 1)
    dependent = executor.submit(add, doomed, 1)
    other = executor.submit(add, dependent, 1)
    job = _wait_running(doomed, executor)
    subprocess.run(["scancel", str(job)], check=True, timeout=30)
    start = time.monotonic()
    error = doomed.exception(timeout=30)
    assert isinstance(error, JobFailedError) and error.state == "CANCELLED" and error.queue_id == job
    assert time.monotonic() - start < 6
    assert isinstance(dependent.exception(timeout=30), JobFailedError)
    assert isinstance(other.exception(timeout=30), JobFailedError)
    assert not list(cache.glob("*_i.h5"))


def test_a_python_exception_upstream_reaches_the_dependent(executor: Any) -> None:
    failed = executor.submit(fail_after, 0)
    dependent = executor.submit(add, failed, 1)
    with pytest.raises(ValueError, match="upstream raised"):
        dependent.result(timeout=TIMEOUT)


def test_cache_reuse_without_resubmission(slurm_cluster: SlurmCluster, cache: Path, tmp_path: Path) -> None:
    from executorlib import SlurmClusterExecutor

    marker = tmp_path / "ran"
    with SlurmClusterExecutor(cache_directory=str(cache)) as exe:
        assert exe.submit(count_and_add, str(marker), 1, 2).result(timeout=TIMEOUT) == 3
    with SlurmClusterExecutor(cache_directory=str(cache)) as exe:
        future = exe.submit(count_and_add, str(marker), 1, 2)
        assert future.done() and future.result(timeout=0) == 3
        assert exe.status()["status_queries"] == 0
    assert marker.read_text() == "ran\n"


def test_shutdown_table(slurm_cluster: SlurmCluster, cache: Path) -> None:
    from executorlib import SlurmClusterExecutor

    exe = SlurmClusterExecutor(cache_directory=str(cache))
    running = exe.submit(sleep_and_return, 120, 1)
    job = _wait_running(running, exe)
    exe.shutdown(wait=False, cancel_futures=True)
    assert running.cancelled()
    _wait_state(job, "CANCELLED")


def count_and_sleep(marker: str, seconds: float, value: Any) -> Any:
    with open(marker, "a") as handle:
        handle.write("ran\n")
    time.sleep(seconds)
    return value


def test_detaching_cancels_the_futures_and_the_job_writes_its_output(
    slurm_cluster: SlurmCluster, cache: Path, tmp_path: Path
) -> None:
    """compat-1x.md §6: shutdown(wait=False) cancels the Future at once without scancel; the job goes on, and a
    new executor on the same cache directory gets the result from the cache without a second job."""
    from executorlib import SlurmClusterExecutor

    marker = tmp_path / "ran"
    exe = SlurmClusterExecutor(cache_directory=str(cache))
    future = exe.submit(count_and_sleep, str(marker), 1, 7)
    job = _wait_running(future, exe)
    exe.shutdown(wait=False)
    assert future.cancelled()
    _wait_state(job, "COMPLETED")
    with SlurmClusterExecutor(cache_directory=str(cache)) as again:
        cached = again.submit(count_and_sleep, str(marker), 1, 7)
        assert cached.done() and cached.result(timeout=0) == 7
    assert marker.read_text() == "ran\n"


def test_disconnect_and_reconnect_from_a_second_process(
    slurm_cluster: SlurmCluster, cache: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from executorlib import SlurmClusterExecutor
        import test_slurm_cluster_executor as t
        from xl_serial import register_by_value
        register_by_value(t)
        exe = SlurmClusterExecutor(cache_directory={str(cache)!r})
        first = exe.submit(t.sleep_and_return, 4, 5)
        second = exe.submit(t.count_and_add, {str(marker)!r}, first, 1)
        if sys.argv[1] == "detach":
            exe.shutdown(wait=False, cancel_futures=False)
            print("detached", flush=True)
        else:
            with exe:
                print(first.result(timeout=120), second.result(timeout=120), flush=True)
        """
    )
    run = [sys.executable, "-c", script]
    out = subprocess.run([*run, "detach"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0 and "detached" in out.stdout, out.stderr
    queued = {e["queue_id"] for e in _entries(cache)}
    out = subprocess.run([*run, "attach"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "6"]
    assert marker.read_text() == "ran\n"
    assert {e["queue_id"] for e in _entries(cache)} == queued  # the same jobs: nothing was submitted twice


def test_terminate_tasks_in_cache(executor: Any, cache: Path) -> None:
    from executorlib import terminate_tasks_in_cache

    future = executor.submit(sleep_and_return, 120, 2)
    job = _wait_running(future, executor)
    stopped = terminate_tasks_in_cache(str(cache), backend="slurm")
    assert [s["queue_id"] for s in stopped] == [job]
    _wait_state(job, "CANCELLED")
    assert future.exception(timeout=30) is not None


def _entries(cache: Path) -> list[dict[str, Any]]:
    from executorlib import get_cache_data

    return get_cache_data(str(cache))


def _wait_running(future: Any, executor: Any, timeout: float = 60) -> int:
    task = executor._scheduler._of_future[future]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if task.queue_id is not None:
            out = subprocess.run(
                ["squeue", "-h", "-j", str(task.queue_id), "-o", "%T"], capture_output=True, text=True, timeout=30
            )
            if out.stdout.strip() == "RUNNING":
                return int(task.queue_id)
        time.sleep(0.2)
    raise AssertionError("the job did not start")


def _wait_state(job: int, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", str(job), "-o", "%T"], capture_output=True, text=True, timeout=30
        )
        if out.stdout.strip() == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job} did not reach {state}")


@pytest.mark.timeout(200)
def test_a_job_killed_at_its_time_limit_fails_its_future_with_timeout(executor: Any) -> None:
    """The only TIMEOUT test (60-90 s): the Future fails with SLURM's state, the id and the log within about 5 s
    of SLURM reporting TIMEOUT."""
    from executorlib.errors import JobFailedError

    future = executor.submit(sleep_and_return, 600, 1, resource_dict={"run_time_max": 1})
    job = _wait_running(future, executor)
    _wait_state(job, "TIMEOUT", timeout=180)
    seen = time.monotonic()
    error = future.exception(timeout=30)
    assert time.monotonic() - seen <= 5.5
    assert isinstance(error, JobFailedError) and error.state == "TIMEOUT" and error.queue_id == job
    assert "DUE TO TIME LIMIT" in str(error) and str(error.log_file) in str(error)


def step_info(i: int) -> tuple[int, str, str]:
    import os

    return 2 * i, os.environ.get("SLURM_JOB_ID", ""), os.environ.get("SLURM_STEP_ID", "")


def parallel_workflow(n: int) -> list[tuple[int, str, str]]:
    from executorlib import SlurmJobExecutor

    with SlurmJobExecutor(max_workers=n) as inner:
        futures = [inner.submit(step_info, i, resource_dict={"cores": 1}) for i in range(n)]
        return [f.result(timeout=120) for f in futures]


def test_nested_srun_steps_inside_a_cluster_job(executor: Any, slurm_cluster: SlurmCluster) -> None:
    """The docs' "Combine both" example: a SlurmClusterExecutor job opens a SlurmJobExecutor whose calls run
    as srun steps of that same job."""
    future = executor.submit(
        parallel_workflow, 2, resource_dict={"cores": 1, "partition": slurm_cluster.partition, "run_time_max": 300}
    )
    results = future.result(timeout=TIMEOUT)
    job = executor._scheduler._of_future[future].queue_id
    assert [r[0] for r in results] == [0, 2]
    assert {r[1] for r in results} == {str(job)}  # inside the outer job's allocation
    steps = [r[2] for r in results]
    assert all(step.isdigit() for step in steps) and len(set(steps)) == 2  # one srun step per call


# -- block_allocation=True: workers as batch jobs ------------------------------------------------------------------


def worker_view(i: int) -> tuple[int, str | None, bool, int]:
    """What a task sees of its worker: its job id, whether the key is visible, and the worker's pid."""
    import os

    key_visible = any(name.startswith("XL_COMM_KEY") for name in os.environ)
    return i, os.environ.get("SLURM_JOB_ID"), key_visible, os.getpid()


def test_block_allocation_workers_are_batch_jobs_with_the_key_in_a_private_file(
    slurm_cluster: SlurmCluster, cache: Path
) -> None:
    from executorlib import SlurmClusterExecutor

    with SlurmClusterExecutor(max_workers=2, block_allocation=True, cache_directory=str(cache)) as exe:
        key = exe._scheduler._hub.key.hex()
        seen = [f.result(timeout=TIMEOUT) for f in [exe.submit(worker_view, i) for i in range(8)]]
        scripts = list((cache / "workers").glob("*/run_queue.sh"))
        key_directories = list((cache / "workers").glob(".xl-comm-keys-*"))
        assert key_directories and all(path.stat().st_mode & 0o777 == 0o700 for path in key_directories)
        assert (cache / "workers").stat().st_mode & 0o777 == 0o700
        unread = [path for directory in key_directories for path in directory.iterdir()]
        assert all(path.stat().st_mode & 0o777 == 0o600 for path in unread)
        # a worker deletes its key file once read: only a worker that has not run a task may still have one
        assert len(unread) <= 2 - len({pid for _, _, _, pid in seen})
    assert [i for i, _, _, _ in seen] == list(range(8))
    assert all(job is not None and job.isdigit() for _, job, _, _ in seen)  # ran inside batch jobs
    assert not any(visible for _, _, visible, _ in seen)  # the worker removed the key file's name from os.environ
    assert scripts and not any(key in path.read_text() for path in scripts)  # never in the script
    assert not list((cache / "workers").glob(".xl-comm-keys-*"))  # removed at shutdown


def preset_scale() -> dict[str, int]:
    return {"scale": 10}


def scaled(x: int, scale: int = 1) -> int:
    return x * scale


def test_block_allocation_init_function_presets_every_call(slurm_cluster: SlurmCluster, cache: Path) -> None:
    from executorlib import SlurmClusterExecutor

    with SlurmClusterExecutor(
        max_workers=1, block_allocation=True, init_function=preset_scale, cache_directory=str(cache)
    ) as exe:
        assert [exe.submit(scaled, i).result(timeout=TIMEOUT) for i in range(3)] == [0, 10, 20]


def test_block_allocation_worker_job_cancelled_fails_its_task(slurm_cluster: SlurmCluster, cache: Path) -> None:
    from executorlib import SlurmClusterExecutor
    from executorlib.errors import ExecutorlibSocketError

    with SlurmClusterExecutor(max_workers=1, block_allocation=True, cache_directory=str(cache)) as exe:
        _, job, _, _ = exe.submit(worker_view, 0).result(timeout=TIMEOUT)
        assert job is not None
        future = exe.submit(sleep_and_return, 600, "never")
        time.sleep(1)  # let the task reach the worker
        subprocess.run(["scancel", job], check=True, timeout=60)
        with pytest.raises(ExecutorlibSocketError, match="died"):
            future.result(timeout=TIMEOUT)


def test_block_allocation_mpi_worker_job(slurm_cluster: SlurmCluster, cache: Path) -> None:
    from executorlib import SlurmClusterExecutor

    with SlurmClusterExecutor(
        max_workers=1, block_allocation=True, cache_directory=str(cache), resource_dict={"cores": 2}
    ) as exe:
        assert exe.submit(mpi_calc, 3).result(timeout=TIMEOUT) == [(3, 2, 0), (3, 2, 1)]  # srun -n 2 in the job

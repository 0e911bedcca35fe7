"""SlurmJobExecutor on the real cluster: serial and MPI steps, block allocation, steps that SLURM ends (time limit,
scancel), and, run as scripts under ``salloc``/``sbatch`` because pytest itself is not in an allocation,
concurrent steps inside an allocation, requests larger than it, and nested use from a batch job.

From the login side (no allocation) every srun makes an allocation of its own, which the first tests use.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from xl_slurm_helpers import SlurmCluster

TIMEOUT = 60


def step_identity() -> dict[str, Any]:
    return {
        "job": os.environ.get("SLURM_JOB_ID"),
        "step": os.environ.get("SLURM_STEP_ID"),
        "cpus": len(os.sched_getaffinity(0)),
        "cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK"),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "cwd": os.getcwd(),
    }


def rank_and_size() -> tuple[int, int]:
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def scancel_my_step() -> None:
    import subprocess

    subprocess.run(["scancel", f"{os.environ['SLURM_JOB_ID']}.{os.environ['SLURM_STEP_ID']}"], timeout=30, check=True)
    time.sleep(120)


def fail() -> None:
    raise KeyError("from a step")


def scaled(x: int, factor: int = 1) -> int:
    return x * factor


def factor_ten() -> dict[str, int]:
    return {"factor": 10}


def test_serial_call_runs_as_its_own_step(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    from executorlib import SlurmJobExecutor

    with SlurmJobExecutor(max_workers=2) as exe:
        assert exe.allocation is None  # pytest runs outside any allocation: each srun makes its own
        first = exe.submit(step_identity).result(timeout=TIMEOUT)
        tuned = exe.submit(step_identity, resource_dict={"threads_per_core": 2, "cwd": str(tmp_path / "w")})
        failed = exe.submit(fail)
        second = tuned.result(timeout=TIMEOUT)
        with pytest.raises(KeyError, match="from a step"):
            failed.result(timeout=TIMEOUT)
    assert first["job"] is not None and first["step"] == "0"
    assert second["job"] != first["job"]
    assert second["cpus_per_task"] == "2" and second["omp"] == "2"
    assert second["cwd"] == str(tmp_path / "w")


@pytest.mark.parametrize("pmi_mode", [None, "pmi2"])
def test_mpi_call_on_two_ranks(slurm_cluster: SlurmCluster, pmi_mode: str | None) -> None:
    from executorlib import SlurmJobExecutor

    with SlurmJobExecutor(pmi_mode=pmi_mode) as exe:
        result = exe.submit(rank_and_size, resource_dict={"cores": 2}).result(timeout=TIMEOUT)
    assert sorted(result) == [(0, 2), (1, 2)]


def test_block_allocation_pool_with_init_function_and_restart(slurm_cluster: SlurmCluster) -> None:
    from executorlib import SlurmJobExecutor
    from executorlib.errors import ExecutorlibSocketError

    with SlurmJobExecutor(max_workers=2, block_allocation=True, init_function=factor_ten, restart_limit=1) as exe:
        assert [f.result(timeout=TIMEOUT) for f in [exe.submit(scaled, i) for i in range(6)]] == [
            0,
            10,
            20,
            30,
            40,
            50,
        ]
        jobs = {f.result(timeout=TIMEOUT)["job"] for f in [exe.submit(step_identity) for _ in range(4)]}
        assert 1 <= len(jobs) <= 2  # long-lived steps: the calls share the pool's workers
        killed = exe.submit(os._exit, 3)  # the worker dies; restart_limit=1 restarts it and retries the call once
        with pytest.raises(ExecutorlibSocketError, match="died"):
            killed.result(timeout=TIMEOUT)
        assert exe.submit(scaled, 4).result(timeout=TIMEOUT) == 40


def test_scancel_of_a_step_fails_the_future_with_cancelled(slurm_cluster: SlurmCluster) -> None:
    from executorlib import SlurmJobExecutor
    from executorlib.errors import ExecutorlibSocketError

    with SlurmJobExecutor() as exe:
        future = exe.submit(scancel_my_step)
        error = future.exception(timeout=TIMEOUT)
    assert isinstance(error, ExecutorlibSocketError)
    assert "SLURM state CANCELLED" in str(error) and "scancel_my_step" in str(error)


def test_keys_srun_cannot_honour_are_rejected(slurm_cluster: SlurmCluster) -> None:
    from executorlib import SlurmJobExecutor
    from executorlib.errors import ResourceDictError

    with pytest.raises(ResourceDictError, match=r"'submission_template'.*SlurmJobExecutor"):
        SlurmJobExecutor(resource_dict={"submission_template": "#!/bin/bash"})
    with SlurmJobExecutor() as exe:
        with pytest.raises(ResourceDictError, match=r"'priority'.*not supported by SlurmJobExecutor"):
            exe.submit(step_identity, resource_dict={"priority": 5})
        # an unknown key: pydantic's ValidationError where pydantic is installed (as 1.x), else ResourceDictError
        with pytest.raises(ValueError, match="partition"):
            exe.submit(step_identity, resource_dict={"partition": "debug"})
    with pytest.raises(ValueError, match="pmi_mode"):
        SlurmJobExecutor(pmi_mode="pmi 2")
    with pytest.raises(ValueError, match="block_allocation=True outside a SLURM allocation needs max_workers"):
        SlurmJobExecutor(block_allocation=True)


# -- inside an allocation: the test body runs as a script under salloc or sbatch ---------------------------------

INSIDE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    from executorlib import SlurmJobExecutor
    from executorlib.errors import ResourceDictError

    def meet(directory, me, parties):
        # Succeeds only if `parties` calls run at the same time: each leaves a file and waits for the others.
        import os, time
        os.makedirs(directory, exist_ok=True)
        open(os.path.join(directory, me), "w").close()
        deadline = time.monotonic() + 30
        while len(os.listdir(directory)) < parties:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return os.environ["SLURM_JOB_ID"], os.environ["SLURM_STEP_ID"]

    def ranks():
        from mpi4py import MPI
        return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size(), os.environ["SLURM_JOB_ID"]

    def error_of(call):
        try:
            call()
        except (ValueError, ResourceDictError) as problem:
            return f"{type(problem).__name__}: {problem}"
        return None

    out = {"job": os.environ["SLURM_JOB_ID"]}
    with SlurmJobExecutor() as exe:
        out["allocation"] = exe.allocation.cores
        meeting = os.path.join(sys.argv[2], "meet")
        out["met"] = [f.result(timeout=60) for f in [exe.submit(meet, meeting, str(i), 2) for i in range(2)]]
        out["ranks"] = sorted(tuple(r) for r in exe.submit(ranks, resource_dict={"cores": 2}).result(timeout=60))
        out["too_big_task"] = error_of(lambda: exe.submit(ranks, resource_dict={"cores": 3}))
    out["too_big_max_cores"] = error_of(lambda: SlurmJobExecutor(max_cores=4))
    out["too_big_pool"] = error_of(lambda: SlurmJobExecutor(max_workers=3, block_allocation=True))
    with SlurmJobExecutor(block_allocation=True) as pool:  # sized from the allocation: 2 workers of 1 core
        out["pool"] = pool.info["max_workers"]
        calls = [pool.submit(meet, meeting + "-pool", str(i), 2) for i in range(2)]
        out["pool_met"] = [f.result(timeout=60) for f in calls]
    Path(sys.argv[1]).write_text(json.dumps(out))
    """
)


def run_inside(slurm_cluster: SlurmCluster, tmp_path: Path, how: str) -> dict[str, Any]:
    script = tmp_path / "inside.py"
    script.write_text(INSIDE)
    out = tmp_path / "out.json"
    command = f"{slurm_cluster.python} {script} {out} {tmp_path}"
    if how == "salloc":
        slurm_cluster.salloc(command, ntasks=2, timeout=120, cwd=tmp_path)
    else:
        job = slurm_cluster.sbatch(
            command, options=["--ntasks=2", "--time=5", f"--output={tmp_path / 'job.out'}"], cwd=tmp_path
        )
        info = slurm_cluster.wait_final(job, timeout=120)
        log = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
        assert info["JobState"] == "COMPLETED", f"{info}\n{log}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("how", ["salloc", "sbatch"])
def test_inside_an_allocation(slurm_cluster: SlurmCluster, tmp_path: Path, how: str) -> None:
    """Under salloc -n 2, and nested in an sbatch --wrap job: two one-core steps run at the same time (each waits
    for the other), an MPI step has 2 ranks, all in the allocation's job; requests beyond 2 CPUs fail clearly."""
    out = run_inside(slurm_cluster, tmp_path, how)
    assert out["allocation"] == 2
    assert all(met is not None for met in out["met"]), out["met"]
    assert {job for job, _ in out["met"]} == {out["job"]}
    assert len({step for _, step in out["met"]}) == 2  # two steps of the same job
    assert [rank[:2] for rank in out["ranks"]] == [[0, 2], [1, 2]]
    assert {rank[2] for rank in out["ranks"]} == {out["job"]}
    assert "needs 3 cores" in out["too_big_task"] and "has 2" in out["too_big_task"]
    assert out["too_big_task"].startswith("ResourceDictError")
    assert "max_cores=4" in out["too_big_max_cores"] and "has 2" in out["too_big_max_cores"]
    assert "need 3 cores" in out["too_big_pool"] and "has 2" in out["too_big_pool"]
    assert out["pool"] == 2
    assert all(met is not None for met in out["pool_met"])


def test_step_past_its_time_limit_fails_with_timeout(timelimit_step: Any) -> None:
    """run_time_max=60 -> srun --time=1; SLURM ends the step 60-90 s after it started (started at collection)."""
    from executorlib.errors import ExecutorlibSocketError

    remaining = 150 - (time.monotonic() - timelimit_step.started)
    error = timelimit_step.future.exception(timeout=max(remaining, 10))
    assert isinstance(error, ExecutorlibSocketError)
    assert "SLURM state TIMEOUT" in str(error) and "run_time_max" in str(error)


def proc_view() -> tuple[bytes, bytes]:
    """What the kernel shows of this worker to anyone running as the user."""
    with open("/proc/self/environ", "rb") as environ, open("/proc/self/cmdline", "rb") as cmdline:
        return environ.read(), cmdline.read()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("block_allocation", [True, False])
@pytest.mark.parametrize("cores", [1, 2])
def test_the_key_is_not_in_a_steps_environment(slurm_cluster: SlurmCluster, block_allocation: bool, cores: int) -> None:
    from executorlib import SlurmJobExecutor

    with SlurmJobExecutor(max_workers=1, block_allocation=block_allocation, resource_dict={"cores": cores}) as exe:
        key = exe._scheduler._hub.key.hex().encode()
        views = exe.submit(proc_view).result(timeout=TIMEOUT)
        srun = [p for p in psutil.Process().children(recursive=True) if p.name() == "srun"]
        srun_views = [(Path(f"/proc/{p.pid}/environ").read_bytes(), p.cmdline()) for p in srun]
    views = [views] if cores == 1 else views
    assert len(views) == cores
    for environ, cmdline in views:
        assert key not in environ.lower() and key not in cmdline.lower()
        names = [entry.split(b"=", 1) for entry in environ.split(b"\0") if entry.startswith(b"XL_COMM_KEY_FILE=")]
        assert names and not any(os.path.exists(path) for _, path in names)  # read and deleted
    if block_allocation:
        assert srun_views  # the pool's step was running
    assert not any(key in environ.lower() or key.decode() in " ".join(cmdline) for environ, cmdline in srun_views)
    assert not list(Path.cwd().glob(".xl-comm-keys-*"))  # removed at shutdown

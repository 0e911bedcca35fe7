"""The SLURM test cluster does what SlurmJobExecutor (srun steps inside an allocation, also nested in an sbatch
job) and SlurmClusterExecutor (one sbatch job per call, via pysqa) need: steps, MPI ranks, concurrent one-CPU
steps and jobs beyond the real core count, final job states without slurmdbd, time limits, and dependencies that
fail instead of pending forever. Every blocking call has a timeout (the helpers cancel what they started)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest
from xl_slurm_helpers import SlurmCluster, SlurmCommandError

RANKS = "from mpi4py import MPI; c = MPI.COMM_WORLD; print(c.Get_rank(), c.Get_size(), flush=True)"


def barrier_script(directory: Path, parties: int) -> Path:
    """A shell script: each caller leaves a file in ``directory`` and exits 0 once ``parties`` files are there,
    1 after 30 s. It only succeeds if ``parties`` callers run at the same time."""
    script = directory / "barrier.sh"
    script.write_text(
        "#!/bin/bash\n"
        f'd={shlex.quote(str(directory))}/arrived; mkdir -p "$d"; touch "$d/$$-$RANDOM"\n'
        "for _ in $(seq 300); do\n"
        f'  [ "$(ls "$d" | wc -l)" -ge {parties} ] && exit 0\n'
        "  sleep 0.1\n"
        "done\n"
        "exit 1\n"
    )
    script.chmod(0o755)
    return script


def test_partition_and_oversubscribed_node(slurm_cluster: SlurmCluster) -> None:
    assert slurm_cluster.partition == "debug"
    assert slurm_cluster.cpus >= 3  # declared above the real core count (XL_SLURM_CPUS, default 4 per core)
    conf = slurm_cluster.conf.read_text()
    for line in (
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=pmi2",
        "DependencyParameters=kill_invalid_depend",
        "EnforcePartLimits=ALL",
        "SchedulerParameters=batch_sched_delay=0",
    ):
        assert line in conf.splitlines()


def test_srun_one_task(slurm_cluster: SlurmCluster) -> None:
    proc = slurm_cluster.srun(["true"], ntasks=1, timeout=60)
    assert proc.returncode == 0


def test_srun_environment_names_the_task(slurm_cluster: SlurmCluster) -> None:
    proc = slurm_cluster.srun(["bash", "-c", "echo $SLURM_PROCID/$SLURM_NTASKS"], ntasks=2, timeout=60)
    assert sorted(proc.stdout.split()) == ["0/2", "1/2"]


@pytest.mark.parametrize("mpi", [["--mpi=pmi2"], []], ids=["mpi=pmi2", "MpiDefault"])
def test_mpi_ranks_under_srun(slurm_cluster: SlurmCluster, mpi: list[str]) -> None:
    """The venv's mpi4py + mpich wheel get one world of 2 ranks (singletons would print "0 1" twice)."""
    proc = slurm_cluster.srun([slurm_cluster.python, "-c", RANKS], ntasks=2, options=mpi, timeout=90)
    assert sorted(proc.stdout.split("\n")[:-1]) == ["0 2", "1 2"], proc.stderr


def test_more_ranks_than_real_cores(slurm_cluster: SlurmCluster) -> None:
    """The node declares more CPUs than it has, so -n 4 runs on 2 cores without --overcommit."""
    proc = slurm_cluster.srun([slurm_cluster.python, "-c", RANKS], ntasks=4, timeout=90)
    assert sorted(proc.stdout.split("\n")[:-1]) == ["0 4", "1 4", "2 4", "3 4"], proc.stderr


def test_three_exact_steps_run_at_once_in_salloc(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """Three one-CPU steps (srun --exact) inside one 3-task allocation all run at the same time (more than the
    2 real cores); without --exact each step would take the whole allocation and they would run one by one."""
    barrier = barrier_script(tmp_path, 3)
    steps = " ".join(f"srun --exact -n 1 {barrier} & pids+=($!);" for _ in range(3))
    proc = slurm_cluster.salloc(
        f'pids=(); {steps} for p in "${{pids[@]}}"; do wait $p || exit 1; done', ntasks=3, timeout=90
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "arrived").iterdir())) == 3


def test_python_in_sbatch_job_starts_srun_steps(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """The SlurmJobExecutor-in-a-job case: Python inside an sbatch job starts srun steps (here MPI ones)."""
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import json, subprocess, sys\n"
        "steps = [subprocess.Popen(['srun', '--exact', '-n', '2', sys.executable, '-c', sys.argv[1]],"
        " stdout=subprocess.PIPE, text=True) for _ in range(2)]\n"
        "outs = [p.communicate(timeout=100)[0] for p in steps]\n"
        "print(json.dumps([[p.returncode, sorted(o.splitlines())] for p, o in zip(steps, outs)]))\n"
    )
    out = tmp_path / "job.out"
    job = slurm_cluster.sbatch(
        f"{shlex.quote(slurm_cluster.python)} {driver} {shlex.quote(RANKS)}",
        options=["--ntasks=4", "--time=5", f"--output={out}"],
        cwd=tmp_path,
    )
    info = slurm_cluster.wait_final(job, timeout=120)
    assert info["JobState"] == "COMPLETED", out.read_text()
    assert json.loads(out.read_text()) == [[0, ["0 2", "1 2"]], [0, ["0 2", "1 2"]]]


def test_sbatch_wrap_completed_and_failed(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """Final states without slurmdbd: scontrol show job (and squeue -t all) while the record is younger than
    MinJobAge, sacct -c (jobcomp/filetxt) after that."""
    ok = slurm_cluster.sbatch("echo hello", options=[f"--output={tmp_path / 'ok.out'}"], cwd=tmp_path)
    bad = slurm_cluster.sbatch("exit 3", options=["--output=/dev/null"], cwd=tmp_path)
    info = slurm_cluster.wait_final(ok, timeout=60)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0")
    assert (tmp_path / "ok.out").read_text() == "hello\n"
    info = slurm_cluster.wait_final(bad, timeout=60)
    assert (info["JobState"], info["Reason"], info["ExitCode"]) == ("FAILED", "NonZeroExitCode", "3:0")
    squeue = slurm_cluster.run(["squeue", "-h", "-t", "all", "-j", f"{ok},{bad}", "-o", "%i %T"], timeout=30)
    assert sorted(squeue.stdout.split("\n")[:-1]) == sorted([f"{ok} COMPLETED", f"{bad} FAILED"])
    sacct = slurm_cluster.run(["sacct", "-c", "-n", "-P", "-j", f"{ok},{bad}", "-o", "JobID,State"], timeout=30)
    assert sorted(sacct.stdout.split("\n")[:-1]) == sorted([f"{ok}|COMPLETED", f"{bad}|FAILED"])


def test_sbatch_wait_returns_the_job_exit_status(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    name = slurm_cluster.unique_name()
    args = ["sbatch", "--wait", f"--job-name={name}", "--output=/dev/null", "--wrap", "exit 5"]
    proc = slurm_cluster.run(args, timeout=60, check=False, cwd=tmp_path, job_name=name)
    assert proc.returncode == 5


def test_more_one_cpu_jobs_at_once_than_cores(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """SlurmClusterExecutor submits one job per call: four one-CPU jobs run at the same time on 2 cores."""
    barrier = barrier_script(tmp_path, 4)
    jobs = [slurm_cluster.sbatch(str(barrier), options=["--ntasks=1", "--output=/dev/null"]) for _ in range(4)]
    states = [slurm_cluster.wait_final(job, timeout=60)["JobState"] for job in jobs]
    assert states == ["COMPLETED"] * 4


def test_oversized_request_fails_at_submission(slurm_cluster: SlurmCluster) -> None:
    """EnforcePartLimits=ALL: a job larger than the node is rejected at once instead of pending forever."""
    too_many = str(slurm_cluster.cpus + 1)
    with pytest.raises(SlurmCommandError, match="More processors requested than permitted"):
        slurm_cluster.sbatch("true", options=[f"--ntasks={too_many}"])
    with pytest.raises(SlurmCommandError, match="More processors requested than permitted"):
        slurm_cluster.srun(["true"], ntasks=slurm_cluster.cpus + 1, timeout=60)


def test_scancel_gives_cancelled(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("sleep 300", options=["--output=/dev/null", "--time=10"])
    slurm_cluster.run(["scancel", str(job)], timeout=30)
    assert slurm_cluster.wait_final(job, timeout=60)["JobState"] == "CANCELLED"


def test_afterok_on_several_jobs(slurm_cluster: SlurmCluster) -> None:
    """afterok:A:B (colon-separated; "A,B" would mean afterok:A,afterany:B): the dependent runs after both
    succeed, and is cancelled (kill_invalid_depend) instead of pending forever when one of them fails."""
    opts = ["--output=/dev/null", "--time=5"]
    a = slurm_cluster.sbatch("sleep 1", options=opts)
    b = slurm_cluster.sbatch("sleep 1", options=opts)
    failing = slurm_cluster.sbatch("sleep 1; exit 1", options=opts)
    after_ok = slurm_cluster.sbatch("true", options=[*opts, f"--dependency=afterok:{a}:{b}"])
    after_failed = slurm_cluster.sbatch("true", options=[*opts, f"--dependency=afterok:{a}:{failing}"])
    held = slurm_cluster.job_info(after_failed)
    assert (held["JobState"], held["Reason"]) == ("PENDING", "Dependency")
    assert slurm_cluster.wait_final(after_ok, timeout=60)["JobState"] == "COMPLETED"
    info = slurm_cluster.wait_final(after_failed, timeout=60)
    assert (info["JobState"], info["Reason"]) == ("CANCELLED", "DependencyNeverSatisfied")
    assert slurm_cluster.job_state(failing) == "FAILED"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_time_limit_gives_timeout(slurm_cluster: SlurmCluster, timelimit_job: int) -> None:
    """--time=1 (whole minutes is the smallest limit) ends in TIMEOUT. slurmctld checks limits every 30 s, so this
    takes 60-90 s after the job started; the job is submitted when collection ends (see conftest), so the wait
    overlaps with the tests before it."""
    info = slurm_cluster.wait_final(timelimit_job, timeout=200)
    assert (info["JobState"], info["Reason"]) == ("TIMEOUT", "TimeLimit")
    assert info["TimeLimit"] == "00:01:00"


def test_srun_overhead_is_small(slurm_cluster: SlurmCluster) -> None:
    """A sanity bound only (measured: about 0.03 s here); the real number is reported, not asserted."""
    start = time.monotonic()
    for _ in range(5):
        slurm_cluster.srun(["true"], timeout=60)
    mean = (time.monotonic() - start) / 5
    assert mean < 10, mean
    print(f"srun -n 1 true: {mean:.3f} s mean of 5")


def test_helper_timeout_cancels_its_allocation(slurm_cluster: SlurmCluster) -> None:
    """A helper call that times out cancels the allocation it made instead of leaking it."""
    name = slurm_cluster.unique_name()
    with pytest.raises(SlurmCommandError, match="timed out"):
        slurm_cluster.salloc("sleep 60", ntasks=1, timeout=3, name=name)
    left = slurm_cluster.run(["squeue", "-h", f"--name={name}", "-o", "%T"], timeout=30)
    assert left.stdout.strip() in ("", "CANCELLED", "COMPLETING"), left.stdout

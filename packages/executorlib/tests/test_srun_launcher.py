"""SrunLauncher maps a task's resources onto one srun command line; current_allocation reads the allocation's size."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
from executorlib.launchers.local import WORKER_MODULE
from executorlib.launchers.srun import SLURM_JOB_RULES, SrunLauncher, current_allocation, single_node
from executorlib.resources import Resources
from hypothesis import given
from hypothesis import strategies as st

WORKER_ARGS = ["--connect", "tcp://127.0.0.1:5555", "--worker-id", "3", "--worker-index", "0"]
EXTRA = ["--mem=4G", "--constraint=haswell", "--qos=low", "--account=proj", "--hint=nomultithread"]

resources_strategy = st.builds(
    Resources,
    cores=st.integers(1, 64),
    threads_per_core=st.integers(1, 8),
    gpus_per_core=st.integers(0, 4),
    num_nodes=st.none() | st.integers(1, 8),
    exclusive=st.booleans(),
    run_time_max=st.none() | st.integers(1, 10_000),
    cwd=st.none() | st.sampled_from(["/tmp/work", "/scratch/a b"]),
    slurm_cmd_args=st.lists(st.sampled_from(EXTRA), unique=True).map(tuple),
)


def starting(argv: list[str], prefix: str) -> list[str]:
    return [arg for arg in argv if arg.startswith(prefix)]


@given(resources_strategy, st.none() | st.sampled_from(["pmi2", "pmix", "cray_shasta"]), st.booleans())
def test_every_requested_resource_appears_exactly_once(
    resources: Resources, pmi_mode: str | None, overcommit: bool
) -> None:
    argv = SrunLauncher(pmi_mode=pmi_mode, overcommit=overcommit).argv(resources, WORKER_ARGS)
    python = argv.index(sys.executable)
    flags, command = argv[1:python], argv[python:]
    assert argv[0] == "srun"
    assert starting(flags, "--ntasks=") == [f"--ntasks={resources.cores}"]
    assert starting(flags, "--cpus-per-task=") == [f"--cpus-per-task={resources.threads_per_core}"]
    assert starting(flags, "--gpus-per-task=") == (
        [f"--gpus-per-task={resources.gpus_per_core}"] if resources.gpus_per_core else []
    )
    assert starting(flags, "--nodes=") == ([f"--nodes={resources.num_nodes}"] if resources.num_nodes else [])
    assert flags.count("--exclusive") == int(resources.exclusive)
    assert flags.count("--exact") == 1  # steps share the allocation instead of queueing one after another
    assert flags.count("--overcommit") == int(overcommit)
    minutes = math.ceil(resources.run_time_max / 60) if resources.run_time_max else None
    assert starting(flags, "--time=") == ([f"--time={minutes}"] if minutes else [])
    assert starting(flags, "--mpi=") == ([f"--mpi={pmi_mode}"] if pmi_mode else [])
    assert starting(flags, "--chdir=") == ([f"--chdir={resources.cwd}"] if resources.cwd else [])
    extra = list(resources.slurm_cmd_args)
    assert flags[len(flags) - len(extra) :] == extra  # after the built flags: the user's value wins
    assert all(flags.count(arg) == 1 for arg in extra)
    assert command[:3] == [sys.executable, "-m", WORKER_MODULE]
    assert command[3 : 3 + len(WORKER_ARGS)] == WORKER_ARGS
    assert command[3 + len(WORKER_ARGS) :] == (["--mpi"] if resources.cores > 1 else [])


def test_doc_example() -> None:
    argv = SrunLauncher(pmi_mode="pmi2").argv(Resources(cores=2, run_time_max=90), ["--x"])
    assert argv[:6] == ["srun", "--ntasks=2", "--cpus-per-task=1", "--exact", "--time=2", "--mpi=pmi2"]
    assert argv[-2:] == ["--x", "--mpi"]


def test_slurm_rules_reject_only_what_srun_cannot_do() -> None:
    from executorlib.errors import ResourceDictError

    SLURM_JOB_RULES.check(Resources(num_nodes=2, exclusive=True, run_time_max=5, slurm_cmd_args=("-A", "x")), where="t")
    with pytest.raises(ResourceDictError, match="'priority'"):
        SLURM_JOB_RULES.check(Resources(priority=3), where="t")
    with pytest.raises(ResourceDictError, match="'submission_template'"):
        SLURM_JOB_RULES.check(Resources(submission_template="x"), where="t")


@pytest.mark.parametrize(
    ("environ", "cores"),
    [
        ({}, None),
        ({"SLURM_NTASKS": "4"}, None),  # no job id: not an allocation
        ({"SLURM_JOB_ID": "9", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "3", "SLURM_JOB_CPUS_PER_NODE": "8"}, 6),
        ({"SLURM_JOB_ID": "9", "SLURM_NTASKS": "2", "SLURM_JOB_CPUS_PER_NODE": "2"}, 2),  # salloc -n 2
        ({"SLURM_JOB_ID": "9", "SLURM_CPUS_PER_TASK": "2", "SLURM_JOB_CPUS_PER_NODE": "2"}, 2),  # sbatch -c 2
        ({"SLURM_JOB_ID": "9", "SLURM_JOB_CPUS_PER_NODE": "36(x2),12"}, 84),
        ({"SLURM_JOB_ID": "9", "SLURM_CPUS_ON_NODE": "4", "SLURM_JOB_NUM_NODES": "3"}, 12),
        ({"SLURM_JOB_ID": "9", "SLURM_JOB_CPUS_PER_NODE": "odd", "SLURM_NTASKS": "5"}, 5),
        ({"SLURM_JOB_ID": "9"}, None),
    ],
)
def test_current_allocation(environ: dict[str, str], cores: int | None) -> None:
    allocation = current_allocation(environ)
    if cores is None:
        assert allocation is None
    else:
        assert allocation is not None and allocation.cores == cores and allocation.job_id == "9"
        assert allocation.source  # named in the error messages


@given(
    st.integers(1, 1000),
    st.integers(1, 64),
    st.lists(st.tuples(st.integers(1, 128), st.integers(1, 9)), min_size=1, max_size=4),
)
def test_job_cpus_per_node_is_summed(ntasks: int, per_task: int, nodes: list[tuple[int, int]]) -> None:
    listing = ",".join(f"{cpus}(x{count})" if count > 1 else str(cpus) for cpus, count in nodes)
    allocation = current_allocation({"SLURM_JOB_ID": "1", "SLURM_JOB_CPUS_PER_NODE": listing})
    assert allocation is not None and allocation.cores == sum(cpus * count for cpus, count in nodes)
    both: dict[str, Any] = {"SLURM_JOB_ID": "1", "SLURM_NTASKS": str(ntasks), "SLURM_CPUS_PER_TASK": str(per_task)}
    product = current_allocation({**both, "SLURM_JOB_CPUS_PER_NODE": listing})
    assert product is not None and product.cores == ntasks * per_task


def test_single_node() -> None:
    assert single_node({"SLURM_JOB_ID": "1", "SLURM_JOB_NUM_NODES": "1"})
    assert not single_node({"SLURM_JOB_ID": "1", "SLURM_JOB_NUM_NODES": "2"})
    assert not single_node({"SLURM_JOB_NUM_NODES": "1"})


def test_the_key_file_of_a_step_goes_where_the_step_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """On the one node of this allocation: this host's temporary directory; a step that may run elsewhere: its
    working directory, which srun makes the step's hosts see."""
    launch = SrunLauncher()
    monkeypatch.chdir(tmp_path)
    for name in ("SLURM_JOBID", "SLURM_NNODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    assert launch.key_directory(Resources()) is None
    assert launch.key_directory(Resources(num_nodes=2)) == str(tmp_path)
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "4")
    assert launch.key_directory(Resources(cwd="/scratch/run1")) == "/scratch/run1"
    monkeypatch.delenv("SLURM_JOB_ID")  # outside an allocation srun makes one, perhaps on another node
    monkeypatch.delenv("SLURM_JOB_NUM_NODES")
    assert launch.key_directory(Resources()) == str(tmp_path)

"""executorlib 1.x's allocation-size checks (compat-1x.md §8): a SlurmJobExecutor pool must fit SLURM_NTASKS x
SLURM_CPUS_PER_TASK, with or without a job id; a SlurmClusterExecutor pool needs max_workers or max_cores."""

from __future__ import annotations

from pathlib import Path

import pytest
from executorlib import SlurmClusterExecutor, SlurmJobExecutor
from executorlib.launchers.srun import task_slots_error
from hypothesis import given
from hypothesis import strategies as st

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_CPUS_PER_TASK")


@given(st.integers(1, 64), st.integers(1, 16), st.integers(1, 32), st.integers(1, 8))
def test_a_pool_fits_exactly_when_its_cpus_are_at_most_the_product(
    ntasks: int, per_task: int, workers: int, cpus: int
) -> None:
    environ = {"SLURM_NTASKS": str(ntasks), "SLURM_CPUS_PER_TASK": str(per_task)}
    problem = task_slots_error(environ, workers, cpus)
    assert (problem is None) == (workers * cpus <= ntasks * per_task)
    if problem is not None:
        assert f"need {workers * cpus}" in problem and f"give {ntasks * per_task}" in problem
    assert task_slots_error({"SLURM_NTASKS": str(ntasks)}, workers, cpus) is None  # both or no check


@pytest.fixture
def tasks_of_two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SLURM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")


@pytest.mark.usefixtures("tasks_of_two_cpus")
@pytest.mark.parametrize("sizing", [{"max_workers": 3}, {"max_cores": 12}])
def test_slurm_job_pool_larger_than_the_tasks_is_rejected_without_a_job_id(sizing: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"need 12, but SLURM_NTASKS=4 x SLURM_CPUS_PER_TASK=2 give 8"):
        SlurmJobExecutor(**sizing, resource_dict={"cores": 2, "threads_per_core": 2}, block_allocation=True)


@pytest.mark.usefixtures("tasks_of_two_cpus")
def test_openmpi_oversubscribe_lifts_the_check(tmp_path: Path) -> None:
    # graph mode: the check runs at construction, and nothing is started either way
    common = {"max_workers": 3, "resource_dict": {"cores": 2, "threads_per_core": 2}, "block_allocation": True}
    graph = {"plot_dependency_graph_filename": str(tmp_path / "graph.dot")}
    with pytest.raises(ValueError, match="SLURM_CPUS_PER_TASK"):
        SlurmJobExecutor(**common, **graph)
    SlurmJobExecutor(**common, **graph, openmpi_oversubscribe=True).shutdown()


@pytest.mark.parametrize("sizing", [{}, {"max_workers": None, "max_cores": None}])
def test_slurm_cluster_pool_needs_max_workers_or_max_cores(tmp_path: Path, sizing: dict[str, None]) -> None:
    with pytest.raises(ValueError, match=r"block_allocation=True\) needs max_workers or max_cores"):
        SlurmClusterExecutor(cache_directory=str(tmp_path), block_allocation=True, **sizing)

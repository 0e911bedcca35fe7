"""``executor.info`` and the ``max_workers`` getter as executorlib 1.x shows them (compat-1x.md §3, §4 getter):
the configuration as given, exactly 1.x's keys (users compare with ``==``), None after shutdown; live values are
``status()``'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from executorlib import SingleNodeExecutor, SlurmClusterExecutor, SlurmJobExecutor
from executorlib.api import MpiExecSpawner, TestClusterExecutor
from executorlib.compat.spawners import SrunSpawner
from executorlib.executors.info import SINGLE_NODE_HIDDEN, interactive_info
from executorlib.executors.options import ExecutorOptions
from hypothesis import given
from hypothesis import strategies as st

DEFAULT_INFO = {
    "cores": 1,
    "cwd": None,
    "openmpi_oversubscribe": False,
    "cache_directory": None,
    "hostname_localhost": None,
    "log_obj_size": False,
    "spawner": MpiExecSpawner,
    "max_cores": None,
    "max_workers": None,
}


def init_nothing() -> dict[str, Any]:
    return {}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("disable_dependencies", [False, True])
def test_single_node_defaults_give_exactly_the_1x_dict_and_none_after_shutdown(disable_dependencies: bool) -> None:
    exe = SingleNodeExecutor(disable_dependencies=disable_dependencies)
    assert exe.info == DEFAULT_INFO
    assert exe.info["spawner"] is MpiExecSpawner  # the class object executorlib.api exports
    assert exe.max_workers is None
    exe.shutdown()
    assert exe.info is None and exe.max_workers is None


@pytest.mark.timeout(60)
def test_resource_dict_keys_appear_as_given_except_the_hidden_ones(tmp_path: Path) -> None:
    resource_dict = {"cwd": str(tmp_path), "threads_per_core": 1, "error_log_file": "err.txt"}
    with SingleNodeExecutor(
        max_workers=2, max_cores=2, cache_directory="rel/cache", resource_dict=resource_dict
    ) as exe:
        assert exe.info == {
            **DEFAULT_INFO,
            "cwd": str(tmp_path),
            "error_log_file": "err.txt",
            "cache_directory": "rel/cache",  # as given, not made absolute
            "max_cores": 2,
            "max_workers": 2,
        }
        assert exe.max_workers == 2
        assert exe.status()["max_cores"] == 2 and exe.status()["queued"] == 0


@pytest.mark.timeout(60)
def test_block_allocation_adds_the_pool_keys_and_the_current_worker_count() -> None:
    exe = SingleNodeExecutor(max_cores=2, block_allocation=True, init_function=init_nothing, restart_limit=1)
    expected = {key: value for key, value in DEFAULT_INFO.items() if key != "max_cores"}
    expected.update(init_function=init_nothing, queue_join_on_shutdown=False, restart_limit=1, max_workers=2)
    assert exe.info == expected
    assert exe.max_workers == 2  # derived from max_cores // cores
    exe.shutdown()
    assert exe.info is None and exe.max_workers is None
    assert exe.status()["shutdown"] is True


@pytest.mark.timeout(60)
def test_file_mode_gives_the_1x_keys_and_none_after_shutdown(tmp_path: Path) -> None:
    exe = TestClusterExecutor(cache_directory=str(tmp_path), resource_dict={"cores": 1})
    info = exe.info
    assert info is not None
    assert set(info) == {
        "executor_kwargs",
        "execute_function",
        "terminate_function",
        "validate_function",
        "pysqa_config_directory",
        "backend",
        "disable_dependencies",
        "pmi_mode",
        "refresh_rate",
        "wait",
    }
    assert info["executor_kwargs"]["cache_directory"] == str(tmp_path)
    assert info["executor_kwargs"]["exclusive"] is False
    assert callable(info["execute_function"]) and info["wait"] is True
    assert exe.max_workers is None
    exe.shutdown()
    assert exe.info is None


def test_slurm_job_keeps_the_srun_keys_and_names_its_srun_spawner() -> None:
    exe = SlurmJobExecutor(pmi_mode="pmix", plot_dependency_graph=True)  # graph mode: no srun needed
    assert exe.info == {
        "cores": 1,
        "threads_per_core": 1,
        "gpus_per_core": 0,
        "cwd": None,
        "openmpi_oversubscribe": False,
        "slurm_cmd_args": [],
        "cache_directory": None,
        "hostname_localhost": None,
        "log_obj_size": False,
        "pmi_mode": "pmix",
        "spawner": SrunSpawner,
        "max_cores": None,
        "max_workers": None,
    }


def test_slurm_cluster_graph_mode_reports_backend_and_pysqa_directory(tmp_path: Path) -> None:
    exe = SlurmClusterExecutor(cache_directory=str(tmp_path), pysqa_config_directory="conf", plot_dependency_graph=True)
    info = exe.info
    assert info is not None
    assert (info["backend"], info["pysqa_config_directory"], info["execute_function"]) == ("slurm", "conf", None)


def test_srun_spawner_builds_its_command_with_our_srun_builder() -> None:
    command = SrunSpawner(cores=2, threads_per_core=2, pmi_mode="pmix").generate_command(["python", "w.py"])
    assert command[0] == "srun" and command[-2:] == ["python", "w.py"]
    assert {"--ntasks=2", "--cpus-per-task=2", "--mpi=pmix"} <= set(command)


RESOURCE_KEYS = ["cores", "cwd", "threads_per_core", "gpus_per_core", "slurm_cmd_args", "error_log_file", "cache_key"]


@given(
    resource_dict=st.dictionaries(st.sampled_from(RESOURCE_KEYS), st.integers(0, 4) | st.none(), max_size=5),
    block_allocation=st.booleans(),
    slurm=st.booleans(),
    max_workers=st.none() | st.integers(1, 8),
    workers=st.integers(1, 8),
)
def test_interactive_info_has_exactly_1x_keys(
    resource_dict: dict[str, Any], block_allocation: bool, slurm: bool, max_workers: int | None, workers: int
) -> None:
    options = ExecutorOptions(resource_dict=resource_dict, block_allocation=block_allocation, max_workers=max_workers)
    info = interactive_info(options, spawner=MpiExecSpawner, workers=workers, slurm=slurm)
    shown = {key for key in resource_dict if slurm or key not in SINGLE_NODE_HIDDEN}
    for key in shown:
        assert info[key] == resource_dict[key]
    common = {"cores", "cwd", "openmpi_oversubscribe", "cache_directory", "hostname_localhost", "log_obj_size"}
    common |= {"spawner", "max_workers"}
    if slurm:
        common |= {"threads_per_core", "gpus_per_core", "slurm_cmd_args", "pmi_mode"}
    common |= {"init_function", "queue_join_on_shutdown", "restart_limit"} if block_allocation else {"max_cores"}
    assert set(info) == common | shown
    assert info["max_workers"] == (workers if block_allocation else max_workers)
    if not slurm:
        assert not SINGLE_NODE_HIDDEN & set(info)

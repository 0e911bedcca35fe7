"""executorlib 1.x's constructor order, ``wait``, ``future_queue`` and ``len(exe)`` (compat-1x.md §1)."""

from __future__ import annotations

import inspect
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import pytest
from executorlib import SingleNodeExecutor, SlurmJobExecutor
from executorlib.api import cancel_items_in_queue

ONE_X_ORDER = [
    "max_workers",
    "cache_directory",
    "max_cores",
    "resource_dict",
    "hostname_localhost",
    "block_allocation",
    "init_function",
    "disable_dependencies",
    "refresh_rate",
    "plot_dependency_graph",
    "plot_dependency_graph_filename",
    "export_workflow_filename",
    "log_obj_size",
    "wait",
    "restart_limit",
    "openmpi_oversubscribe",
]


def positional(cls: type) -> list[str]:
    return [
        p.name for p in inspect.signature(cls).parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]


def test_single_node_takes_the_1x_parameters_in_1x_order() -> None:
    assert positional(SingleNodeExecutor) == ONE_X_ORDER
    assert inspect.signature(SingleNodeExecutor).parameters["record_dependency_graph"].kind is (
        inspect.Parameter.KEYWORD_ONLY
    )


def test_slurm_job_has_pmi_mode_after_resource_dict() -> None:
    assert positional(SlurmJobExecutor) == [*ONE_X_ORDER[:4], "pmi_mode", *ONE_X_ORDER[4:]]
    assert inspect.signature(SlurmJobExecutor).parameters["record_dependency_graph"].kind is (
        inspect.Parameter.KEYWORD_ONLY
    )


@pytest.mark.timeout(60)
def test_wait_true_is_accepted_and_positional_1x_calls_reach_their_parameters() -> None:
    # 1x order: ..., log_obj_size, wait, restart_limit, openmpi_oversubscribe
    args: list[Any] = [1, None, None, None, True, True, None, False, 0.01, False, None, None, False, True, 2, False]
    with SingleNodeExecutor(*args) as exe:
        assert exe.submit(sum, [1, 2]).result(timeout=30) == 3
    with SingleNodeExecutor(wait=True) as exe:
        assert exe.submit(sum, [2, 2]).result(timeout=30) == 4


@pytest.mark.parametrize("cls", [SingleNodeExecutor, SlurmJobExecutor])
def test_wait_false_names_the_rule(cls: type) -> None:
    with pytest.raises(ValueError, match=r"wait=False\): only the cluster executors"):
        cls(wait=False)


def test_record_dependency_graph_cannot_be_reached_by_position() -> None:
    seventeen: list[Any] = [None, None, None, None, None, False, None, False, 0.01, False, None, None, False]
    seventeen += [True, 0, False, True]  # wait, restart_limit, openmpi_oversubscribe, then one too many
    with pytest.raises(TypeError):
        SingleNodeExecutor(*seventeen)


@pytest.mark.timeout(60)
def test_future_queue_and_len_count_the_tasks_not_handed_on() -> None:
    upstream: Future[int] = Future()
    exe = SingleNodeExecutor()
    try:
        assert len(exe) == 0 and exe.future_queue is not None and exe.future_queue.qsize() == 0
        first = exe.submit(abs, upstream)
        second = exe.submit(abs, upstream)
        assert len(exe) == 2
        snapshot = exe.future_queue
        assert snapshot is not None and snapshot.qsize() == 2
        cancel_items_in_queue(snapshot)
        for future in (first, second):
            with pytest.raises(CancelledError):
                future.result(timeout=30)
        assert len(exe) == 0
    finally:
        upstream.set_result(-1)
        exe.shutdown(wait=True)
    assert exe.future_queue is None and len(exe) == 0


def wants_resources(x: int, resource_dict: dict[str, Any]) -> int:
    return x


def wants_resources_by_keyword(x: int, *, resource_dict: dict[str, Any] | None = None) -> int:
    return x


class Callable1x:
    def __call__(self, resource_dict: dict[str, Any]) -> None:
        pass


@pytest.mark.timeout(60)
def test_a_function_with_a_resource_dict_parameter_is_rejected_at_submit(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor

    with SingleNodeExecutor() as exe:
        for fn in (wants_resources, wants_resources_by_keyword, Callable1x()):
            with pytest.raises(ValueError, match=r"parameter named 'resource_dict'.*rename that parameter"):
                exe.submit(fn, 1, resource_dict={})
        with pytest.raises(ValueError, match="resource_dict"):
            exe.submit(wants_resources, 1, {})
        assert exe.submit(max, 1, 2).result(timeout=30) == 2  # no signature to read: accepted
    with TestClusterExecutor() as exe, pytest.raises(ValueError, match="resource_dict"):
        exe.submit(wants_resources, 1, resource_dict={})
    graph = SingleNodeExecutor(plot_dependency_graph_filename=str(tmp_path / "graph.dot"))
    with graph as exe, pytest.raises(ValueError, match="resource_dict"):
        exe.submit(wants_resources, 1, resource_dict={})

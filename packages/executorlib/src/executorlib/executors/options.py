"""Constructor checks the executors share (SingleNodeExecutor, SlurmJobExecutor, the cluster executors): types and
ranges of the executorlib 1.x parameters, the combinations that cannot work, and graph mode."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from executorlib.caching import check_executor_resources
from executorlib.graph_mode import GraphRecorder
from executorlib.resources import DEFAULTS, ExecutorRules, Resources, merge, parse_resource_dict, user_stacklevel


def check_count(name: str, value: Any, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def check_pool_size(workers: Any) -> None:
    """The ``max_workers`` setter's value: an int of at least 1 (executorlib 1.x does not check)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(
            f"max_workers must be an int of at least 1 (the number of workers the pool keeps), got {workers!r}"
        )


def check_pmi_mode(pmi_mode: Any) -> None:
    """``pmi_mode`` becomes ``srun --mpi=<pmi_mode>``: None (the cluster's MpiDefault) or one word."""
    if pmi_mode is not None and (not isinstance(pmi_mode, str) or not pmi_mode.isidentifier()):
        raise ValueError(
            f"pmi_mode must be None (the cluster's MpiDefault) or one word such as 'pmi2' or 'pmix' "
            f"(srun --mpi=<pmi_mode>), got {pmi_mode!r}"
        )


def check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def check_wait_true(wait: bool, executor: str) -> None:
    """``wait`` is in the interactive executors' signatures for executorlib 1.x's positional order only."""
    if not wait:
        raise ValueError(
            f"{executor}(wait=False): only the cluster executors can leave their jobs running at shutdown; "
            f"{executor}'s workers are processes of this executor and stop with it. Drop wait=False, and call "
            "shutdown(wait=False) to return without waiting for the tasks"
        )


def check_executor_options(
    *,
    max_workers: Any,
    max_cores: Any,
    restart_limit: Any,
    flags: Mapping[str, Any],
    hostname_localhost: Any,
    refresh_rate: Any,
    init_function: Callable[[], Mapping[str, Any]] | None,
    block_allocation: bool,
    cache_directory: Any,
    plot_dependency_graph_filename: Any,
    export_workflow_filename: Any,
) -> None:
    """Reject bad constructor arguments before anything starts, naming the parameter, the value and the fix."""
    check_count("max_workers", max_workers, 1)
    check_count("max_cores", max_cores, 1)
    check_count("restart_limit", restart_limit, 0)
    for name, flag in flags.items():
        check_flag(name, flag)
    if hostname_localhost is not None:
        check_flag("hostname_localhost", hostname_localhost)
    if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int | float) or refresh_rate <= 0:
        raise ValueError(f"refresh_rate must be a positive number of seconds, got {refresh_rate!r}")
    if init_function is not None and not callable(init_function):
        raise TypeError(f"init_function must be a callable returning a dict, got {init_function!r}")
    if init_function is not None and not block_allocation:
        raise ValueError(
            "init_function needs block_allocation=True: it runs once per long-lived worker, and without block "
            "allocation every call gets a fresh process"
        )
    if restart_limit and not block_allocation:
        raise ValueError(
            f"restart_limit={restart_limit} needs block_allocation=True: only long-lived workers are restarted"
        )
    if cache_directory is not None and not isinstance(cache_directory, str | os.PathLike):
        raise TypeError(f"cache_directory must be a directory name, got {type(cache_directory).__name__}")
    for name, value in (
        ("plot_dependency_graph_filename", plot_dependency_graph_filename),
        ("export_workflow_filename", export_workflow_filename),
    ):
        if value is not None and not isinstance(value, str | os.PathLike):
            raise TypeError(f"{name} must be a file name, got {type(value).__name__} {value!r}")


def graph_recorder(
    plot_dependency_graph: bool,
    plot_dependency_graph_filename: str | os.PathLike[str] | None,
    export_workflow_filename: str | os.PathLike[str] | None,
) -> GraphRecorder | None:
    """Graph mode (executorlib 1.x): any of the three records the workflow and runs nothing; None otherwise."""
    if not plot_dependency_graph and plot_dependency_graph_filename is None and export_workflow_filename is None:
        return None
    return GraphRecorder(
        picture=os.fspath(plot_dependency_graph_filename) if plot_dependency_graph_filename else None,
        show=plot_dependency_graph,
        workflow=os.fspath(export_workflow_filename) if export_workflow_filename else None,
    )


@dataclass(frozen=True)
class ExecutorOptions:
    """The constructor arguments the executors share (each class documents them), gathered once from the
    constructor's ``locals()`` instead of being forwarded keyword by keyword."""

    max_workers: int | None = None
    cache_directory: str | os.PathLike[str] | None = None
    max_cores: int | None = None
    resource_dict: Mapping[str, Any] | None = None
    hostname_localhost: bool | None = None
    block_allocation: bool = False
    init_function: Callable[[], Mapping[str, Any]] | None = None
    disable_dependencies: bool = False
    refresh_rate: float = 0.01
    plot_dependency_graph: bool = False
    plot_dependency_graph_filename: str | os.PathLike[str] | None = None
    export_workflow_filename: str | os.PathLike[str] | None = None
    log_obj_size: bool = False
    openmpi_oversubscribe: bool = False
    restart_limit: int = 0
    record_dependency_graph: bool = False
    wait: bool = True

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> ExecutorOptions:
        """The shared options among a constructor's ``locals()`` (its other arguments are its own business)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in arguments.items() if name in names})

    def check(self) -> None:
        """Types, ranges and combinations; raises naming the parameter, the value and the fix."""
        check_flag("wait", self.wait)
        check_executor_options(
            max_workers=self.max_workers,
            max_cores=self.max_cores,
            restart_limit=self.restart_limit,
            flags={
                "block_allocation": self.block_allocation,
                "disable_dependencies": self.disable_dependencies,
                "plot_dependency_graph": self.plot_dependency_graph,
                "log_obj_size": self.log_obj_size,
                "openmpi_oversubscribe": self.openmpi_oversubscribe,
                "record_dependency_graph": self.record_dependency_graph,
            },
            hostname_localhost=self.hostname_localhost,
            refresh_rate=self.refresh_rate,
            init_function=self.init_function,
            block_allocation=self.block_allocation,
            cache_directory=self.cache_directory,
            plot_dependency_graph_filename=self.plot_dependency_graph_filename,
            export_workflow_filename=self.export_workflow_filename,
        )
        if self.init_function is not None and self.cache_directory is not None:
            warnings.warn(  # executorlib 1.11 warns too
                "init_function together with cache_directory: a cached result is found by the function and its "
                "arguments only, not by what init_function set up on the worker, so a result cached with another "
                "init_function may come back stale; give each set-up its own cache_directory (or cache_key)",
                UserWarning,
                stacklevel=user_stacklevel(),
            )

    def graph(self) -> GraphRecorder | None:
        """Graph mode's recorder (nothing runs), or None."""
        return graph_recorder(
            self.plot_dependency_graph, self.plot_dependency_graph_filename, self.export_workflow_filename
        )

    def resources(self, rules: ExecutorRules, known: Mapping[str, Any] | None = None) -> Resources:
        """The executor's own resources: defaults, then ``resource_dict`` (or its executorlib keys ``known``), then
        ``cache_directory``; checked against ``rules``."""
        where = f"{rules.executor}(resource_dict=...)"
        if known is None:
            known = parse_resource_dict(self.resource_dict, where=where)
        resources = merge(DEFAULTS, known)
        rules.check(resources, where=where)
        check_executor_resources(resources, where=where)
        if self.cache_directory is not None:  # every task's default; a task's resource_dict may name another
            resources = merge(resources, {"cache_directory": os.path.abspath(self.cache_directory)})
        return resources

"""SingleNodeExecutor: functions in local worker processes, one per call or a pool."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from executorlib.accounting import available_cores, core_budget, pool_size
from executorlib.caching import check_executor_resources
from executorlib.executors.base import BaseExecutor, register_caller_module
from executorlib.executors.options import check_executor_options, graph_recorder
from executorlib.graph_mode import NoScheduler
from executorlib.launch import LocalLaunch, check_gpus, host_gpus
from executorlib.resources import DEFAULTS, BackendRules, Resources, merge, parse_resource_dict

SINGLE_NODE_RULES = BackendRules(
    executor="SingleNodeExecutor",
    unsupported={
        "num_nodes": "it runs on one node; use SlurmJobExecutor or FluxJobExecutor for multi-node tasks",
        "exclusive": "it runs on one node and cannot reserve it; use SlurmJobExecutor or FluxJobExecutor",
        "priority": "it has no queue priorities; use FluxJobExecutor or the cluster executors",
        "slurm_cmd_args": "it does not use SLURM; use SlurmJobExecutor or SlurmClusterExecutor",
        "submission_template": "it submits no batch jobs; use SlurmClusterExecutor or FluxClusterExecutor",
    },
)


class SingleNodeExecutor(BaseExecutor):
    """Run Python functions in worker processes on this machine.

    ``block_allocation=False`` (default): a fresh Python process per call, at most ``max_cores`` cores busy
    (default: the CPUs available to this process). ``block_allocation=True``: ``max_workers`` long-lived workers
    with the resources of ``resource_dict``, an optional ``init_function`` whose returned dict presets keyword
    arguments, and ``restart_limit`` restarts of workers that die.

    ``resource_dict={"run_time_max": seconds}`` kills a task still running when the limit passes (with its process
    group) and fails its Future with ``TimeoutError``; with block allocation the constructor's limit applies to
    each task and the killed worker is replaced per ``restart_limit`` (the task is not retried).

    ``cache_directory`` (or ``resource_dict={"cache_directory": ...}`` per call) keeps each successful result in
    ``<key>_o.h5``, the key being ``resource_dict["cache_key"]`` or the hash of the function and its arguments; a
    later call with the same key, in this run or another, gets the stored result without starting a worker.
    Failures are not cached (as in executorlib 1.x): a call that raised runs again. See :mod:`executorlib.caching`.

    >>> with SingleNodeExecutor() as exe:
    ...     exe.submit(sum, [1, 2]).result()
    3
    """

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: Mapping[str, Any] | None = None,
        hostname_localhost: bool | None = None,
        block_allocation: bool = False,
        init_function: Callable[[], Mapping[str, Any]] | None = None,
        disable_dependencies: bool = False,
        refresh_rate: float = 0.01,
        plot_dependency_graph: bool = False,
        plot_dependency_graph_filename: str | None = None,
        export_workflow_filename: str | None = None,
        log_obj_size: bool = False,
        openmpi_oversubscribe: bool = False,
        restart_limit: int = 0,
        record_dependency_graph: bool = False,
    ) -> None:
        check_executor_options(
            max_workers=max_workers,
            max_cores=max_cores,
            restart_limit=restart_limit,
            flags={
                "block_allocation": block_allocation,
                "disable_dependencies": disable_dependencies,
                "plot_dependency_graph": plot_dependency_graph,
                "log_obj_size": log_obj_size,
                "openmpi_oversubscribe": openmpi_oversubscribe,
                "record_dependency_graph": record_dependency_graph,
            },
            hostname_localhost=hostname_localhost,
            refresh_rate=refresh_rate,
            init_function=init_function,
            block_allocation=block_allocation,
            cache_directory=cache_directory,
            plot_dependency_graph_filename=plot_dependency_graph_filename,
            export_workflow_filename=export_workflow_filename,
        )
        graph = graph_recorder(plot_dependency_graph, plot_dependency_graph_filename, export_workflow_filename)
        where = "SingleNodeExecutor(resource_dict=...)"
        resources = merge(DEFAULTS, parse_resource_dict(resource_dict, where=where))
        SINGLE_NODE_RULES.check(resources, where=where)
        check_executor_resources(resources, where=where)
        if cache_directory is not None:  # every task's default; a task's resource_dict may name another
            resources = merge(resources, {"cache_directory": os.path.abspath(cache_directory)})
        self._max_cores = max_cores
        self._budget = core_budget(max_workers, max_cores, available_cores())
        self._launch = LocalLaunch(openmpi_oversubscribe)
        self._launch.check_oversubscribe()
        self._gpus = host_gpus()
        self._check_task(resources, where=where)  # before any worker starts
        localhost = hostname_localhost is not False
        register_caller_module()
        scheduler: Any
        if graph is not None:  # record the workflow, run nothing (executorlib 1.x semantics)
            scheduler = NoScheduler()
        elif block_allocation:
            from executorlib.schedulers.block import BlockAllocationScheduler

            if max_workers is None and max_cores is None:
                warnings.warn(
                    f"block_allocation=True without max_workers or max_cores: starting one worker per available "
                    f"CPU ({available_cores()}); pass max_workers to choose",
                    UserWarning,
                    stacklevel=2,
                )
            workers = pool_size(max_workers, max_cores, resources.slots, available_cores())
            scheduler = BlockAllocationScheduler(
                workers=workers,
                resources=resources,
                init_function=init_function,
                restart_limit=restart_limit,
                localhost=localhost,
                same_host=True,  # LocalLaunch: subprocesses and a local mpiexec
                launch=self._launch,
                gpus=self._gpus,
                enforce_run_time_max=True,
            )
        else:
            from executorlib.schedulers.one_process import OneProcessScheduler

            scheduler = OneProcessScheduler(
                core_budget=self._budget,
                max_tasks=max_workers,
                localhost=localhost,
                same_host=True,
                launch=self._launch,
                gpus=self._gpus,
                enforce_run_time_max=True,
            )
        super().__init__(
            scheduler,
            resources=resources,
            rules=SINGLE_NODE_RULES,
            fixed_resources=block_allocation,
            log_obj_size=log_obj_size,
            disable_dependencies=disable_dependencies,
            graph=graph,
            record_dependency_graph=record_dependency_graph,
        )

    def _check_task(self, resources: Resources, *, where: str) -> None:
        self._launch.check(resources, where=where)
        if resources.gpus_per_core:
            check_gpus(resources, self._gpus, where=where)
        if self._budget is not None and resources.slots > self._budget:
            raise ValueError(
                f"{where}: this task needs {resources.slots} cores (cores x threads_per_core) but the executor may "
                f"use only {self._budget} (max_cores or the CPUs available); lower the request or raise max_cores"
            )

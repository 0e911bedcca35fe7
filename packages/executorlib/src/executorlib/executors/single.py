"""SingleNodeExecutor: functions in local worker processes, one per call or a pool."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from executorlib.accounting import available_cores, core_budget, pool_size
from executorlib.executors.options import ExecutorOptions, check_wait_true
from executorlib.executors.socket import SocketExecutor
from executorlib.gpus import check_gpus
from executorlib.launchers.local import LocalLauncher
from executorlib.resources import ExecutorRules, Resources

SINGLE_NODE_RULES = ExecutorRules(
    executor="SingleNodeExecutor",
    unsupported={
        "num_nodes": "it runs on one node; use SlurmJobExecutor or FluxJobExecutor for multi-node tasks",
        "exclusive": "it runs on one node and cannot reserve it; use SlurmJobExecutor or FluxJobExecutor",
        "priority": "it has no queue priorities; use FluxJobExecutor or the cluster executors",
        "slurm_cmd_args": "it does not use SLURM; use SlurmJobExecutor or SlurmClusterExecutor",
        "submission_template": "it submits no batch jobs; use SlurmClusterExecutor or FluxClusterExecutor",
    },
)


class SingleNodeExecutor(SocketExecutor):
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

    The parameters keep executorlib 1.x's order, so positional 1.x calls work. ``wait`` is there for that order only:
    True changes nothing, False is an error (only the cluster executors leave jobs running at shutdown). Later
    parameters (``record_dependency_graph``) are keyword-only.

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
        wait: bool = True,
        restart_limit: int = 0,
        openmpi_oversubscribe: bool = False,
        *,
        record_dependency_graph: bool = False,
    ) -> None:
        options = ExecutorOptions.of(locals())
        options.check()
        check_wait_true(wait, "SingleNodeExecutor")
        resources = options.resources(SINGLE_NODE_RULES)
        self._budget = core_budget(max_workers, max_cores, available_cores())
        self._launcher = LocalLauncher(openmpi_oversubscribe)
        self._launcher.check_oversubscribe()
        self._check_task(resources, {}, where="SingleNodeExecutor(resource_dict=...)")  # before any worker starts

        def workers() -> int:
            if max_workers is None and max_cores is None:
                warnings.warn(
                    f"block_allocation=True without max_workers or max_cores: starting one worker per available "
                    f"CPU ({available_cores()}); pass max_workers to choose",
                    UserWarning,
                    stacklevel=4,
                )
            return pool_size(max_workers, max_cores, resources.cpus, available_cores())

        self._compose(
            options,
            resources=resources,
            rules=SINGLE_NODE_RULES,
            launcher=self._launcher,
            core_budget=self._budget,
            max_tasks=max_workers,
            pool_size=workers,
            localhost=hostname_localhost is not False,
        )

    def _check_task(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        self._launcher.check(resources, where=where)
        if resources.gpus_per_core:
            check_gpus(resources, self._launcher.gpus, where=where)
        if self._budget is not None and resources.cpus > self._budget:
            raise ValueError(
                f"{where}: this task needs {resources.cpus} cores (cores x threads_per_core) but the executor may "
                f"use only {self._budget} (max_cores or the CPUs available); lower the request or raise max_cores"
            )

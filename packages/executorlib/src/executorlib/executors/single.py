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

    The parameters keep executorlib 1.x's order, so positional 1.x calls work; later ones are keyword-only.

    Args:
        max_workers: Without block allocation: at most this many calls run at once (None: the core budget of
            ``max_cores`` bounds them). With ``block_allocation=True``: the number of long-lived workers; None derives
            it from ``max_cores`` (or the cores available) divided by the cores of one worker. An int of at least 1, or
            None (default).
        cache_directory: Directory of the result cache: each successful result is kept in ``<key>_o.h5``, the key being
            ``resource_dict['cache_key']`` or the hash of the function and its arguments, and a later call with the same
            key, in this run or another, gets the stored result without starting a worker. Failures are not cached. A
            call's ``resource_dict['cache_directory']`` overrides it. None (default): no cache.
        max_cores: The most cores (``cores`` x ``threads_per_core``, summed over the calls running) the executor
            occupies at once; a single call asking for more is rejected at ``submit()``. None (default): the cores
            available, that is this machine's CPUs (SingleNodeExecutor), the SLURM allocation (SlurmJobExecutor; outside
            an allocation no limit, but at most one call per local CPU in flight), the flux instance (FluxJobExecutor);
            with ``max_workers`` alone and no block allocation, only ``max_workers`` bounds. An int of at least 1, or
            None.
        resource_dict: Default resources of every call; a call's own ``resource_dict`` overrides them key by key. With
            ``block_allocation=True`` they are the resources of each worker, and a call may only change ``cache_key``,
            ``cache_directory`` and ``error_log_file``. Keys: ``cores``, ``threads_per_core``, ``gpus_per_core``,
            ``cwd``, ``cache_key``, ``cache_directory``, ``num_nodes``, ``exclusive``, ``error_log_file``,
            ``run_time_max``, ``priority``, ``slurm_cmd_args``, ``submission_template`` (see
            :class:`executorlib.api.Resources`). An unknown key, a bad value or a key this executor cannot honour raises
            ResourceDictError (a ValueError and a TypeError) at construction or at ``submit()``, naming the key and the
            fix. None (default): 1 core, 1 thread per core, no GPU, this process's working directory.
        hostname_localhost: Where the executor's socket listens for its workers: True on loopback, False on this host's
            name (for workers on other hosts). None (default): loopback for SingleNodeExecutor; for SlurmJobExecutor and
            FluxJobExecutor loopback when the allocation or instance has one node, else the host name.
        block_allocation: False (default): a fresh worker process per call, started once its cores are free. True: a
            pool of long-lived workers (``max_workers``), all with the resources of ``resource_dict``, reused from call
            to call; what ``init_function`` sets up stays between calls.
        init_function: Needs ``block_allocation=True`` (ValueError otherwise). A callable without arguments run once in
            each worker when it starts; the dict it returns presets keyword arguments: a call on that worker whose
            function has a parameter of that name and does not pass it gets the value. Default None.
        disable_dependencies: True: no Future may be an argument of ``submit()`` (ValueError naming the count); the
            dependency tracking is skipped. False (default): a call with Future arguments of this executor runs after
            them, with their results in their place.
        refresh_rate: Accepted for executorlib 1.x, where it was the polling interval in seconds; must be a positive
            number. Unused here: nothing polls, a finished Future releases its dependents through a callback. Default
            0.01.
        plot_dependency_graph: True: graph mode. Nothing runs: ``submit()`` records the call and returns a Future that
            is already done (result None), and the graph of the recorded calls is shown at shutdown (inline in Jupyter,
            else a warning says to pass ``plot_dependency_graph_filename``). Default False. To draw the graph of a run
            that executes, see ``record_dependency_graph``.
        plot_dependency_graph_filename: Graph mode (see ``plot_dependency_graph``), the picture written to this file at
            shutdown; the extension picks the format (``.png``, ``.svg``, ``.pdf``, ...). Default None.
        export_workflow_filename: Graph mode (see ``plot_dependency_graph``), the recorded workflow written to this file
            at shutdown as Python Workflow Definition JSON. Default None.
        log_obj_size: True: log the pickled size of every task sent to a worker over a socket, on the logger
            ``executorlib``. Calls run as task files (the cluster executors without block allocation) are not logged.
            Default False.
        wait: Here for executorlib 1.x's positional order only: True (default) changes nothing; False raises ValueError,
            since only the cluster executors leave jobs running at shutdown (call ``shutdown(wait=False)`` to return
            without waiting).
        restart_limit: Needs ``block_allocation=True`` (ValueError otherwise). How many times each worker of the pool is
            replaced when it dies; the task it was running is tried again on the new worker (a task killed for
            ``run_time_max`` is not). Once no worker is left, the pending Futures fail with ExecutorlibSocketError. An
            int of at least 0; default 0, no restarts.
        openmpi_oversubscribe: Allow more MPI ranks than cores. SingleNodeExecutor: ``mpiexec --oversubscribe`` (Open
            MPI; an error at construction with an MPICH mpiexec, which needs no flag). SlurmJobExecutor: ``srun
            --overcommit``, and the checks against the allocation's size are skipped. FluxJobExecutor: True raises
            ValueError (flux has no oversubscription). Default False.
        record_dependency_graph: Keyword-only (not in executorlib 1.x). True: the run executes and records its graph as
            it goes; ``dependency_graph()`` returns the picture of the calls submitted so far. Default False.

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
        # one process per call forks its one-core workers from a warm parent (launchers/local.py)
        self._launcher = LocalLauncher(openmpi_oversubscribe, fork=not block_allocation)
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

"""SlurmJobExecutor: functions in SLURM job steps (``srun``), one step per call or a pool of long-lived steps."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from executorlib.accounting import available_cores, core_budget, pool_size
from executorlib.errors import ResourceDictError
from executorlib.executors.info import interactive_info
from executorlib.executors.options import ExecutorOptions, check_pmi_mode, check_wait_true
from executorlib.executors.socket import SocketExecutor
from executorlib.launchers.srun import (
    SLURM_JOB_RULES,
    Allocation,
    SrunLauncher,
    current_allocation,
    single_node,
    task_slots_error,
)
from executorlib.resources import Resources


class SlurmJobExecutor(SocketExecutor):
    """Run Python functions as SLURM job steps: each worker is ``srun ... python -m xl_comm.worker``.

    Meant for use inside an allocation (``salloc``, an ``sbatch`` script, or a function that a
    SlurmClusterExecutor runs as a job): every step gets the CPUs it asks for (``srun --exact``), so steps run
    side by side in the allocation. Outside any allocation every srun asks SLURM for an allocation of its own,
    as executorlib 1.x does.

    ``resource_dict`` keys map to srun flags: ``cores`` -> ``--ntasks`` (MPI ranks, the worker on each, rank 0
    leading), ``threads_per_core`` -> ``--cpus-per-task``, ``gpus_per_core`` -> ``--gpus-per-task``,
    ``num_nodes`` -> ``--nodes``, ``exclusive`` -> ``--exclusive``, ``run_time_max`` (seconds) -> ``--time`` in
    whole minutes rounded up, ``cwd`` -> ``--chdir``, ``slurm_cmd_args`` appended as given. ``pmi_mode`` ->
    ``--mpi`` (None: the cluster's MpiDefault); ``openmpi_oversubscribe`` -> ``--overcommit`` (more tasks than
    CPUs; the checks against the allocation's size are then skipped). ``priority`` and ``submission_template``
    are rejected: srun steps have neither.

    How many cores: inside an allocation its size (``SLURM_NTASKS x SLURM_CPUS_PER_TASK``, else the CPUs SLURM
    gave the job) is the default ``max_cores``, and a ``max_cores``, a pool (``max_workers`` x cores per worker)
    or a single task larger than it is an error naming both numbers. Outside an allocation there is no size to
    check against: ``max_cores`` bounds the cores of the calls in flight when given; with neither ``max_cores``
    nor ``max_workers``, at most as many calls as this machine has CPUs are in flight at once (each holds an
    srun process here), and ``block_allocation=True`` needs ``max_workers`` or ``max_cores``.

    A step that SLURM ends (its time limit, ``scancel``, preemption) fails its Future with an
    :class:`~executorlib.errors.ExecutorlibSocketError` that names the SLURM state (TIMEOUT, CANCELLED, ...);
    srun's own output still reaches this process's stderr.

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
        pmi_mode: SLURM's MPI plugin, ``srun --mpi=<pmi_mode>`` on every step (``pmix``, ``pmi2``, ...); one word or
            None (default: the cluster's MpiDefault).
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
    """

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: Mapping[str, Any] | None = None,
        pmi_mode: str | None = None,
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
        check_wait_true(wait, "SlurmJobExecutor")
        check_pmi_mode(pmi_mode)
        resources = options.resources(SLURM_JOB_RULES)
        self._launcher = SrunLauncher(pmi_mode=pmi_mode, overcommit=openmpi_oversubscribe)
        self._allocation = current_allocation(os.environ)
        self._overcommit = openmpi_oversubscribe
        if options.graph() is None and shutil.which(self._launcher.srun) is None:
            raise RuntimeError(
                "SlurmJobExecutor starts its workers with srun, which is not on PATH here; run it on a SLURM "
                "cluster (inside salloc or an sbatch job), or use SingleNodeExecutor on this machine"
            )
        self._max_cores = max_cores
        self._pmi_mode = pmi_mode
        self._check_max_cores(max_cores)
        max_tasks = max_workers
        if self._allocation is not None:
            budget = core_budget(max_workers, max_cores, self._allocation.cores)
        else:
            budget = max_cores
            if max_workers is None and max_cores is None:
                max_tasks = available_cores()  # calls in flight, each an srun process here
        self._check_task(resources, {}, where="SlurmJobExecutor(resource_dict=...)")  # before any worker starts
        if block_allocation and (max_workers is not None or max_cores is not None):
            self._check_task_slots(pool_size(max_workers, max_cores, resources.cpus, max_cores or 1), resources.cpus)
        if hostname_localhost is None:
            localhost = single_node(os.environ) and resources.num_nodes in (None, 1)
        else:
            localhost = hostname_localhost
        self._compose(
            options,
            resources=resources,
            rules=SLURM_JOB_RULES,
            launcher=self._launcher,
            core_budget=budget,
            max_tasks=max_tasks,
            pool_size=lambda: self._pool_size(max_workers, max_cores, resources),
            localhost=localhost,
        )

    def _describe(self) -> dict[str, Any]:
        return interactive_info(
            self._options,
            spawner=self._spawner_class(),
            workers=self._worker_count(),
            slurm=True,
            pmi_mode=self._pmi_mode,
        )

    def _check_task_slots(self, workers: int, cpus: int) -> None:
        """executorlib 1.x's check of a pool against SLURM_NTASKS x SLURM_CPUS_PER_TASK (with or without a job id);
        openmpi_oversubscribe (srun --overcommit) lifts it, as it lifts the allocation checks."""
        problem = None if self._overcommit else task_slots_error(os.environ, workers, cpus)
        if problem is not None:
            raise ValueError(
                f"SlurmJobExecutor(block_allocation=True): {problem}; lower max_workers or the cores per worker, "
                "ask salloc/sbatch for more tasks or CPUs per task, or pass openmpi_oversubscribe=True to overcommit"
            )

    def _check_pool_size(self, workers: int) -> None:
        cpus = self._resources.cpus
        self._check_task_slots(workers, cpus)
        if self._too_big(workers * cpus):
            raise ValueError(
                f"max_workers={workers} workers of {cpus} core(s) each (cores x threads_per_core) need "
                f"{workers * cpus} cores, but {self._allocation_text()}; choose fewer workers"
            )

    def _spawner_class(self) -> type:
        from executorlib.compat.spawners import SrunSpawner

        return SrunSpawner

    @property
    def allocation(self) -> Allocation | None:
        """The SLURM allocation the steps run in, or None when each srun makes its own."""
        return self._allocation

    def _too_big(self, needed: int) -> bool:
        return self._allocation is not None and not self._overcommit and needed > self._allocation.cores

    def _allocation_text(self) -> str:
        allocation = self._allocation
        assert allocation is not None
        return f"the SLURM allocation (job {allocation.job_id}) has {allocation.cores} ({allocation.source})"

    def _check_max_cores(self, max_cores: int | None) -> None:
        if max_cores is not None and self._too_big(max_cores):
            raise ValueError(
                f"max_cores={max_cores} is more than {self._allocation_text()}; lower max_cores, ask salloc/sbatch "
                "for more CPUs, or pass openmpi_oversubscribe=True to overcommit (srun --overcommit)"
            )

    def _pool_size(self, max_workers: int | None, max_cores: int | None, resources: Resources) -> int:
        allocation = self._allocation
        if allocation is None and max_workers is None and max_cores is None:
            raise ValueError(
                "block_allocation=True outside a SLURM allocation needs max_workers or max_cores: there is no "
                "allocation to size the pool from (each worker becomes an srun allocation of its own); pass "
                "max_workers, or create the executor inside salloc or an sbatch job"
            )
        cpus = allocation.cores if allocation is not None else max_workers or max_cores or 1
        workers = pool_size(max_workers, max_cores, resources.cpus, cpus)
        if self._too_big(workers * resources.cpus):
            raise ValueError(
                f"max_workers={workers} workers of {resources.cpus} core(s) each (cores x threads_per_core) need "
                f"{workers * resources.cpus} cores, but {self._allocation_text()}; lower max_workers or the cores "
                "per worker, or ask salloc/sbatch for more CPUs"
            )
        return workers

    def _check_task(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        self._launcher.check(resources, where=where)
        if self._too_big(resources.cpus):
            raise ResourceDictError(
                f"{where}: this task needs {resources.cpus} cores (cores={resources.cores} x threads_per_core="
                f"{resources.threads_per_core}) but {self._allocation_text()}; lower the request, ask salloc/sbatch "
                "for more CPUs, or pass openmpi_oversubscribe=True to overcommit (srun --overcommit)"
            )
        if self._max_cores is not None and resources.cpus > self._max_cores:
            raise ValueError(
                f"{where}: this task needs {resources.cpus} cores (cores x threads_per_core) but the executor may "
                f"use only max_cores={self._max_cores}; lower the request or raise max_cores"
            )

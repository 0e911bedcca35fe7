"""The cluster executors: ``TestClusterExecutor`` (local processes) and ``SlurmClusterExecutor`` (sbatch).

Without block allocation every call is a task file in the cache directory (default ``./executorlib_cache``) run by
a job: the :class:`~executorlib.schedulers.task_files.TaskFileScheduler` with a job launcher. Keys of
``resource_dict`` beyond the executorlib ones (``partition``, ``memory_max``, ``queue``, ...) are handed to the job
script template, as in executorlib 1.x; a key that is neither one of those nor a variable of the template in use
gives 1.x's warning with the closest valid key (it is most likely a misspelt resource).
``SlurmClusterExecutor(block_allocation=True)`` is the pool scheduler with workers that are batch jobs
(:class:`~executorlib.launchers.batch_workers.BatchWorkerLauncher`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from executorlib.executors.base import BaseExecutor, register_caller_module, split_resource_dict
from executorlib.executors.options import ExecutorOptions, check_pmi_mode
from executorlib.graph_mode import NoScheduler
from executorlib.launchers.batch_jobs import BatchJobLauncher, BatchSystem
from executorlib.launchers.protocol import JobLauncher
from executorlib.resources import ExecutorRules, Resources, merge
from executorlib.schedulers.protocol import Scheduler
from executorlib.schedulers.task_files import DEFAULT_CACHE_DIRECTORY, TaskFileScheduler


class ClusterExecutor(BaseExecutor):
    """What the cluster executors share: task files run by a job launcher, or a pool of batch-job workers.

    In file mode ``shutdown(wait=True)`` waits until every job ended; ``wait=False`` (or the constructor's
    ``wait=False``, for every shutdown) returns at once, completes the Futures whose outputs exist and cancels
    the others **without stopping their jobs**, as executorlib 1.x does: the jobs write their outputs, which come
    back through the cache (``get_future_from_cache``, or submitting the same call again);
    ``cancel_futures=True`` cancels the Futures not done and stops their jobs (``scancel``, or terminating the
    local process)."""

    _job_launcher: JobLauncher | None = None
    #: what ``info`` reports besides the options (1.x's names): pysqa_config_directory, pmi_mode
    _info_extra: Mapping[str, Any] = {}

    def _compose_task_files(
        self, options: ExecutorOptions, rules: ExecutorRules, launcher: Callable[[], JobLauncher]
    ) -> None:
        """File mode: every call a task file, run as a job by ``launcher()`` (not made in graph mode)."""
        executor = rules.executor
        for name, value in (("max_workers", options.max_workers), ("max_cores", options.max_cores)):
            if value is not None:
                raise ValueError(
                    f"{executor}({name}={value!r}): the number of workers cannot be controlled in file mode, where "
                    "every call is a job of its own and the queue decides how many run; leave it out"
                )
        if options.hostname_localhost is not None:
            raise ValueError(
                f"{executor}(hostname_localhost={options.hostname_localhost!r}): jobs in file mode talk through the "
                "cache directory, not through sockets; leave it out"
            )
        if options.init_function is not None:
            raise ValueError(
                f"{executor}(init_function=...) needs block_allocation=True: it runs once per long-lived worker, and "
                "in file mode every call is a job of its own"
            )
        options.check()
        self._options = options
        where = f"{executor}(resource_dict=...)"
        known, extras = split_resource_dict(options.resource_dict, where=where)
        resources = options.resources(rules, known)
        directory = resources.cache_directory or DEFAULT_CACHE_DIRECTORY
        resources = merge(resources, {"cache_directory": os.path.abspath(directory)})
        graph = options.graph()
        scheduler: Scheduler
        if graph is not None:  # record the workflow, run nothing (executorlib 1.x semantics)
            scheduler = NoScheduler()
        else:
            self._job_launcher = launcher()
            self._job_launcher.check(resources, extras, where=where)
            scheduler = TaskFileScheduler(self._job_launcher)
        register_caller_module(depth=2)
        BaseExecutor.__init__(
            self,
            scheduler,
            resources=resources,
            extras=extras,
            rules=rules,
            fixed_resources=False,
            disable_dependencies=options.disable_dependencies,
            graph=graph,
            record_dependency_graph=options.record_dependency_graph,
            wait=options.wait,
        )

    def _compose_worker_jobs(self, options: ExecutorOptions, rules: ExecutorRules, system: BatchSystem) -> None:
        """``block_allocation=True``: a pool of ``max_workers`` workers, each one batch job of ``system``, fed over
        sockets by the same scheduler as every other pool; their job directories and key files live in
        ``<cache_directory>/workers`` (private, 0700). Results are cached only when ``cache_directory`` is given."""
        from executorlib.accounting import pool_size
        from executorlib.launchers.batch_jobs import check_job_script_keys
        from executorlib.launchers.batch_workers import BatchWorkerLauncher
        from executorlib.schedulers.pool import PoolScheduler

        if options.max_workers is None and options.max_cores is None:
            raise ValueError(
                f"{rules.executor}(block_allocation=True) needs max_workers or max_cores: the pool's workers are batch "
                "jobs of fixed resources, and there is no allocation here to size the pool from; pass max_workers "
                "(the number of worker jobs)"
            )
        options.check()
        self._options = options
        where = f"{rules.executor}(resource_dict=...)"
        known, extras = split_resource_dict(options.resource_dict, where=where)
        resources = options.resources(rules, known)
        directory = os.path.abspath(resources.cache_directory or DEFAULT_CACHE_DIRECTORY)
        max_workers, max_cores = options.max_workers, options.max_cores
        workers = pool_size(max_workers, max_cores, resources.cpus, max_workers or max_cores or 1)
        launcher = BatchWorkerLauncher(
            os.path.join(directory, "workers"), system=system, resources=resources, extras=extras
        )
        check_job_script_keys(system, resources, extras, where=where)
        launcher.check(resources, where=where)
        register_caller_module(depth=2)
        scheduler = PoolScheduler(
            workers=workers,
            resources=resources,
            init_function=options.init_function,
            restart_limit=0,
            localhost=bool(options.hostname_localhost),  # the jobs may run on other nodes: the host name by default
            launcher=launcher,
            log_obj_size=options.log_obj_size,
        )
        BaseExecutor.__init__(
            self,
            scheduler,
            resources=resources,
            rules=rules,
            fixed_resources=True,
            disable_dependencies=options.disable_dependencies,
            record_dependency_graph=options.record_dependency_graph,
            wait=options.wait,
        )

    def _describe(self) -> dict[str, Any]:
        from executorlib.executors.info import file_mode_info, interactive_info
        from executorlib.schedulers.pool import PoolScheduler

        scheduler = self._scheduler
        if isinstance(scheduler, PoolScheduler):  # block_allocation=True: a pool of batch-job workers
            from executorlib.launchers.batch_workers import BatchWorkerLauncher

            info = interactive_info(self._options, spawner=BatchWorkerLauncher, workers=scheduler.workers)
            return {**info, **self._info_extra}
        given = dict(self._options.resource_dict or {})
        given["cache_directory"] = self._options.cache_directory or DEFAULT_CACHE_DIRECTORY
        launcher = self._job_launcher
        executor = type(self).__name__
        return file_mode_info(
            self._options,
            resources=given,
            execute_function=launcher.start if launcher is not None else None,
            terminate_function=launcher.cancel if launcher is not None else None,
            validate_function=launcher.check if launcher is not None else None,
            backend={"SlurmClusterExecutor": "slurm", "FluxClusterExecutor": "flux"}.get(executor),
            pysqa_config_directory=self._info_extra.get("pysqa_config_directory"),
            pmi_mode=self._info_extra.get("pmi_mode"),
        )

    def _worker_count(self) -> int | None:
        from executorlib.schedulers.pool import PoolScheduler

        return self._scheduler.workers if isinstance(self._scheduler, PoolScheduler) else None

    def _resize(self, workers: int) -> None:
        from executorlib.executors.options import check_pool_size
        from executorlib.schedulers.pool import PoolScheduler

        scheduler = self._scheduler
        if not isinstance(scheduler, PoolScheduler):  # file mode: the queue decides how many jobs run
            super()._resize(workers)
            return
        check_pool_size(workers)
        if self._is_shutdown:
            raise RuntimeError("cannot change max_workers after shutdown")
        scheduler.resize(workers)

    def _check_task(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        if self._job_launcher is not None:
            self._job_launcher.check(resources, extras, where=where)

    def dry_run(
        self, fn: Callable[..., Any], /, *args: Any, resource_dict: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> str:
        """The job script ``submit`` would hand to the batch system for this call (nothing is written or
        submitted)."""
        scheduler = self._scheduler
        if not isinstance(scheduler, TaskFileScheduler):
            raise RuntimeError("dry_run() shows the job script of a call in file mode (block_allocation=False)")
        known, extras = split_resource_dict(resource_dict, where="dry_run(..., resource_dict=...)")
        resources = merge(self._resources, known)
        return scheduler.job_script(fn, args, kwargs, resources, {**self._extras, **extras})


TEST_CLUSTER_RULES = ExecutorRules(executor="TestClusterExecutor", unsupported={})


class TestClusterExecutor(ClusterExecutor):
    """The file mode of the cluster executors with local processes as jobs, for debugging the cluster path.

    Each call is written to ``<cache_directory>/<key>_i.h5`` and run by ``python -m xl_cache.worker`` in a process
    of its own (``mpiexec -n cores`` for MPI tasks); its result lands in ``<key>_o.h5``. A task taking another's
    Future starts when that task's process ended. Results are reused: a call whose output is in the cache starts
    no process, and a call whose process still runs (started by an executor that detached with
    ``shutdown(wait=False)``, even in another Python process) is re-attached to. Queue-only ``resource_dict`` keys
    (``run_time_max``, ``submission_template``, ``partition``, ...) are accepted and ignored, so code written for
    ``SlurmClusterExecutor`` runs unchanged; any other key must be a variable of the ``submission_template``
    given, else it gives executorlib 1.x's warning with the closest valid key.

    Args:
        max_workers: File mode (the default): must be None, as every call is a job of its own and the queue decides how
            many run (ValueError otherwise). With ``block_allocation=True`` (SlurmClusterExecutor, FluxClusterExecutor):
            the number of worker jobs; None derives it from ``max_cores`` divided by the cores of one worker.
        cache_directory: Where task files (``<key>_i.h5``) and results (``<key>_o.h5``) live; a call whose result is
            there runs no job, and a later process submitting the same calls on the same directory gets the results or
            re-attaches to the jobs still running. None (default): ``./executorlib_cache``, made absolute at
            construction. A call's ``resource_dict['cache_directory']`` overrides it. With ``block_allocation=True`` the
            worker jobs' files go to ``<cache_directory>/workers``, and results are cached only when it is given.
        max_cores: File mode (the default): must be None (ValueError otherwise). With ``block_allocation=True``: the
            cores of all worker jobs together, from which ``max_workers`` is derived when that is None.
        resource_dict: Default resources of every call; a call's own ``resource_dict`` overrides them key by key. The
            executorlib keys (``cores``, ``threads_per_core``, ``gpus_per_core``, ``cwd``, ``cache_key``,
            ``cache_directory``, ``num_nodes``, ``exclusive``, ``error_log_file``, ``run_time_max``, ``priority``,
            ``slurm_cmd_args``, ``submission_template`` (see :class:`executorlib.api.Resources`)) are checked, and one
            the executor cannot honour raises ResourceDictError at construction or at ``submit()``. Other keys
            (``partition``, ``memory_max``, ``job_name``, ...) are variables of the job script template; one the
            template in use does not read gives executorlib 1.x's warning with the closest valid key and is passed
            on (TestClusterExecutor accepts the queue-only keys and ignores them). None (default): 1 core, 1 thread
            per core.
        hostname_localhost: File mode (the default): must be None, as jobs talk through files (ValueError otherwise).
            With ``block_allocation=True``: True makes the worker jobs connect over loopback (they must all run on this
            host); None or False: to this host's name, as batch jobs may run on other nodes.
        block_allocation: False (default): file mode, every call a task file run by a job of its own. True
            (SlurmClusterExecutor, FluxClusterExecutor): a pool of ``max_workers`` long-lived workers, each one batch
            job, fed over sockets, all with the resources of ``resource_dict``. TestClusterExecutor raises ValueError
            for True.
        init_function: Needs ``block_allocation=True`` (ValueError otherwise). A callable without arguments run once in
            each worker job when it starts; the dict it returns presets keyword arguments: a call on that worker whose
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
        wait: False: every shutdown, the end of a ``with`` block included, acts as ``shutdown(wait=False)``: it returns
            at once and leaves the jobs running, and a later executor on the same cache directory collects their
            results. True (default): ``shutdown()`` waits as asked.
        openmpi_oversubscribe: Allow more MPI ranks than cores. TestClusterExecutor: ``mpiexec --oversubscribe`` for
            tasks with ``cores`` > 1 (Open MPI). SlurmClusterExecutor: accepted for executorlib 1.x and not used (SLURM
            places the ranks). FluxClusterExecutor: True raises ValueError (flux has no oversubscription). Default
            False.

    >>> with TestClusterExecutor(cache_directory="./cache") as exe:  # doctest: +SKIP
    ...     exe.submit(sum, [1, 2]).result()
    3
    """

    __test__ = False  # not a pytest test class

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
        openmpi_oversubscribe: bool = False,
    ) -> None:
        if block_allocation:
            raise ValueError(
                "TestClusterExecutor(block_allocation=True): the test executor runs the file mode only; use "
                "SingleNodeExecutor(block_allocation=True) for a local worker pool"
            )
        from executorlib.launchers.local_jobs import LocalJobLauncher

        options = ExecutorOptions.of(locals())
        self._compose_task_files(
            options, TEST_CLUSTER_RULES, lambda: LocalJobLauncher(openmpi_oversubscribe=openmpi_oversubscribe)
        )


SLURM_CLUSTER_RULES = ExecutorRules(
    executor="SlurmClusterExecutor",
    unsupported={
        "gpus_per_core": "the job script has no GPU line; name GPUs in a submission_template (e.g. #SBATCH --gpus=...)",
        "slurm_cmd_args": "these are srun arguments of SlurmJobExecutor; put #SBATCH lines in a submission_template",
    },
)


class SlurmClusterExecutor(ClusterExecutor):
    """One ``sbatch`` job per call, submitted from the login node; results come back through the cache directory.

    The job script comes from a default template that needs no configuration (partition, memory and time limit
    only when given), from ``resource_dict["submission_template"]`` (jinja2, pysqa's variable names), or from
    the ``queue.yaml`` of ``pysqa_config_directory``. Keys of ``resource_dict`` that are not executorlib resources
    (``partition``, ``memory_max``, ``job_name``, ...) are template variables; one the template in use does not
    read gives a warning at construction or ``submit()`` with the closest valid key. A call taking another call's
    Future is submitted at once with ``--dependency=afterok:<ids>``, so this process may exit
    (``shutdown(wait=False)``) and a later one, submitting the same calls with the same cache directory, gets the
    cached results or re-attaches to the jobs still queued; no call ever runs twice. A job that dies (time limit,
    memory, node failure, ``scancel``) fails its Future with SLURM's state, the job id and the end of its log.
    A failed ``sbatch`` raises :class:`xl_spawn.SubmissionError` (a ``CalledProcessError``) whose ``output`` is
    sbatch's own message; it is not cached. ``pmi_mode`` adds ``srun --mpi=<mode>`` around MPI tasks (cores > 1).

    Args:
        max_workers: File mode (the default): must be None, as every call is a job of its own and the queue decides how
            many run (ValueError otherwise). With ``block_allocation=True`` (SlurmClusterExecutor, FluxClusterExecutor):
            the number of worker jobs; None derives it from ``max_cores`` divided by the cores of one worker.
        cache_directory: Where task files (``<key>_i.h5``) and results (``<key>_o.h5``) live; a call whose result is
            there runs no job, and a later process submitting the same calls on the same directory gets the results or
            re-attaches to the jobs still running. None (default): ``./executorlib_cache``, made absolute at
            construction. A call's ``resource_dict['cache_directory']`` overrides it. With ``block_allocation=True`` the
            worker jobs' files go to ``<cache_directory>/workers``, and results are cached only when it is given.
        max_cores: File mode (the default): must be None (ValueError otherwise). With ``block_allocation=True``: the
            cores of all worker jobs together, from which ``max_workers`` is derived when that is None.
        resource_dict: Default resources of every call; a call's own ``resource_dict`` overrides them key by key. The
            executorlib keys (``cores``, ``threads_per_core``, ``gpus_per_core``, ``cwd``, ``cache_key``,
            ``cache_directory``, ``num_nodes``, ``exclusive``, ``error_log_file``, ``run_time_max``, ``priority``,
            ``slurm_cmd_args``, ``submission_template`` (see :class:`executorlib.api.Resources`)) are checked, and one
            the executor cannot honour raises ResourceDictError at construction or at ``submit()``. Other keys
            (``partition``, ``memory_max``, ``job_name``, ...) are variables of the job script template; one the
            template in use does not read gives executorlib 1.x's warning with the closest valid key and is passed
            on (TestClusterExecutor accepts the queue-only keys and ignores them). None (default): 1 core, 1 thread
            per core.
        pysqa_config_directory: A directory with a pysqa ``queue.yaml`` (and its jinja2 templates) that supplies the job
            script template; needs ``executorlib[cluster]`` (pysqa). None (default): the built-in template, which needs
            no configuration (jinja2 renders it: ``executorlib[cluster]``).
        pmi_mode: SLURM's MPI plugin for tasks with ``cores`` > 1, ``srun --mpi=<pmi_mode>`` (``pmix``, ``pmi2``, ...);
            one word or None (default: the cluster's MpiDefault).
        hostname_localhost: File mode (the default): must be None, as jobs talk through files (ValueError otherwise).
            With ``block_allocation=True``: True makes the worker jobs connect over loopback (they must all run on this
            host); None or False: to this host's name, as batch jobs may run on other nodes.
        block_allocation: False (default): file mode, every call a task file run by a job of its own. True
            (SlurmClusterExecutor, FluxClusterExecutor): a pool of ``max_workers`` long-lived workers, each one batch
            job, fed over sockets, all with the resources of ``resource_dict``. TestClusterExecutor raises ValueError
            for True.
        init_function: Needs ``block_allocation=True`` (ValueError otherwise). A callable without arguments run once in
            each worker job when it starts; the dict it returns presets keyword arguments: a call on that worker whose
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
        wait: False: every shutdown, the end of a ``with`` block included, acts as ``shutdown(wait=False)``: it returns
            at once and leaves the jobs running, and a later executor on the same cache directory collects their
            results. True (default): ``shutdown()`` waits as asked.
        openmpi_oversubscribe: Allow more MPI ranks than cores. TestClusterExecutor: ``mpiexec --oversubscribe`` for
            tasks with ``cores`` > 1 (Open MPI). SlurmClusterExecutor: accepted for executorlib 1.x and not used (SLURM
            places the ranks). FluxClusterExecutor: True raises ValueError (flux has no oversubscription). Default
            False.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: Mapping[str, Any] | None = None,
        pysqa_config_directory: str | None = None,
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
        openmpi_oversubscribe: bool = False,
    ) -> None:
        check_pmi_mode(pmi_mode)
        config = os.fspath(pysqa_config_directory) if pysqa_config_directory is not None else None
        self._info_extra = {"pysqa_config_directory": pysqa_config_directory, "pmi_mode": pmi_mode}
        options = ExecutorOptions.of(locals())
        from executorlib.launchers.sbatch_jobs import slurm_batch_system

        def system() -> BatchSystem:
            return slurm_batch_system(pysqa_config_directory=config, pmi_mode=pmi_mode)

        if block_allocation and options.graph() is None:
            self._compose_worker_jobs(options, SLURM_CLUSTER_RULES, system())
        else:
            self._compose_task_files(options, SLURM_CLUSTER_RULES, lambda: BatchJobLauncher(system()))

"""The Flux executors: ``FluxJobExecutor`` (a flux job per call or per pool worker, inside a flux instance) and
``FluxClusterExecutor`` (a ``flux batch`` job per call, results through the cache directory)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from executorlib.accounting import core_budget, pool_size
from executorlib.errors import ResourceDictError
from executorlib.executors.cluster import ClusterExecutor
from executorlib.executors.info import flux_job_info
from executorlib.executors.options import ExecutorOptions, check_wait_true
from executorlib.executors.socket import SocketExecutor
from executorlib.launchers.batch_jobs import BatchJobLauncher, BatchSystem
from executorlib.launchers.flux import FLUX_JOB_RULES, FluxInstance, FluxLauncher, current_instance
from executorlib.resources import ExecutorRules, Resources


def check_flux_pmi_mode(pmi_mode: Any) -> None:
    """``pmi_mode`` is the job shell's ``pmi`` option: None (flux's default) or one word such as ``pmix``."""
    if pmi_mode is not None and (not isinstance(pmi_mode, str) or not pmi_mode or any(c.isspace() for c in pmi_mode)):
        raise ValueError(
            f"pmi_mode must be None (flux's default) or the job shell's pmi option such as 'pmix', 'pmi2', 'simple' "
            f"or 'simple,pmi2' (flux run -o pmi=<pmi_mode>), got {pmi_mode!r}"
        )


def check_no_oversubscribe(executor: str, openmpi_oversubscribe: bool) -> None:
    if openmpi_oversubscribe:
        raise ValueError(
            f"{executor}(openmpi_oversubscribe=True): flux places every task on cores of its own and has no "
            "oversubscription flag; leave it out (a flux instance started with --test-size=N already simulates "
            "N nodes on one machine)"
        )


class FluxJobExecutor(SocketExecutor):
    """Run Python functions as jobs of the flux instance this process runs in (``flux start``, ``flux alloc``, a
    flux batch job): each worker is ``python -m xl_comm.worker`` submitted through ``flux.job.FluxExecutor``.

    ``block_allocation=False`` (default): a flux job per call, at most ``max_cores`` cores (default: the whole
    instance) or ``max_workers`` calls in flight. ``block_allocation=True``: ``max_workers`` long-lived jobs (default:
    as many as the instance holds) with the resources of ``resource_dict``, an optional ``init_function`` whose
    dict presets keyword arguments, and ``restart_limit`` restarts of workers that die.

    ``resource_dict`` keys become the jobspec: ``cores`` -> tasks (MPI ranks through flux's PMI, the worker on
    each, rank 0 leading), ``threads_per_core`` -> cores per task, ``gpus_per_core`` -> GPUs per task,
    ``num_nodes`` -> nodes, ``exclusive`` -> whole nodes (needs ``num_nodes``), ``run_time_max`` (seconds) -> the
    job's duration (flux ends it; its Future fails naming flux's ``timeout`` exception), ``priority`` -> urgency
    (0-31, 16 is flux's default), ``cwd`` -> the job's working directory (default: this process's, never the
    broker's). ``slurm_cmd_args`` and ``submission_template`` are rejected. A request larger than the instance
    (cores, nodes or GPUs) is an error at ``submit()`` naming the instance's size, never a job queued forever.
    With ``block_allocation=True`` the jobs are the workers, so ``run_time_max`` is each worker's lifetime (as in
    executorlib 1.x and SlurmJobExecutor), not a limit per call.

    Outside any flux instance the constructor raises, naming ``FLUX_URI`` and ``flux start``. Closing the
    executor cancels the jobs it submitted; if this process is killed, its workers notice the lost connection
    and end, so their jobs end with them.

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
        pmi_mode: The flux job shell's ``pmi`` option of every job (``pmix`` for Open MPI 5, ``simple``, ``pmi2``,
            ``simple,pmi2``); None (default): flux's default.
        flux_executor: A ``flux.job.FluxExecutor`` of yours to submit the jobs through; None (default): one shared by
            the executors of this process.
        flux_executor_nesting: True: every worker is a flux instance of its own on its job's resources, so the function
            may submit flux jobs (or open a FluxJobExecutor) inside it. Default False.
        flux_log_files: True: each worker's stdout and stderr go to ``flux_<n>.out``/``flux_<n>.err`` in its working
            directory. False (default): they stay in the instance (``flux job attach``), and the end of stderr is quoted
            when a worker dies.
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

    >>> with FluxJobExecutor(max_workers=2) as exe:  # doctest: +SKIP
    ...     exe.submit(sum, [1, 2], resource_dict={"cores": 1}).result()
    3
    """

    def __init__(
        self,
        max_workers: int | None = None,
        cache_directory: str | None = None,
        max_cores: int | None = None,
        resource_dict: Mapping[str, Any] | None = None,
        pmi_mode: str | None = None,
        flux_executor: Any = None,
        flux_executor_nesting: bool = False,
        flux_log_files: bool = False,
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
        check_wait_true(wait, "FluxJobExecutor")
        check_flux_pmi_mode(pmi_mode)
        check_no_oversubscribe("FluxJobExecutor", openmpi_oversubscribe)
        for name, flag in (("flux_executor_nesting", flux_executor_nesting), ("flux_log_files", flux_log_files)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {type(flag).__name__} {flag!r}")
        if flux_executor is not None and not callable(getattr(flux_executor, "submit", None)):
            raise TypeError(f"flux_executor must be a flux.job.FluxExecutor or None, got {flux_executor!r}")
        resources = options.resources(FLUX_JOB_RULES)
        self._max_cores = max_cores
        graph_only = options.graph() is not None
        # Graph mode runs nothing, so it needs no instance; the checks against its size are then skipped.
        instance = None if graph_only else current_instance("FluxJobExecutor")
        self._instance = instance
        self._launcher = FluxLauncher(
            instance or FluxInstance(uri="(graph mode)", nodes=1, cores=max_cores or 1, gpus=0),
            pmi_mode=pmi_mode,
            flux_executor=flux_executor,
            nested=flux_executor_nesting,
            log_files=flux_log_files,
        )
        cores = instance.cores if instance is not None else max_cores or 1
        if instance is not None and max_cores is not None and max_cores > instance.cores:
            raise ValueError(
                f"max_cores={max_cores} is more than {instance.describe()}; lower max_cores or run in a larger "
                "instance (flux alloc -n ...)"
            )
        if not graph_only:
            self._check_task(resources, {}, where="FluxJobExecutor(resource_dict=...)")  # before any job starts

        def workers() -> int:
            count = pool_size(max_workers, max_cores, resources.cpus, cores)
            if instance is not None and count * resources.cpus > instance.cores:
                raise ValueError(
                    f"max_workers={count} workers of {resources.cpus} core(s) each (cores x threads_per_core) need "
                    f"{count * resources.cpus} cores, but {instance.describe()}; lower max_workers or the cores per "
                    "worker, or run in a larger instance"
                )
            return count

        self._compose(
            options,
            resources=resources,
            rules=FLUX_JOB_RULES,
            launcher=self._launcher,
            core_budget=core_budget(max_workers, max_cores, cores),
            max_tasks=max_workers,
            pool_size=workers,
            localhost=hostname_localhost if hostname_localhost is not None else _one_node(instance),
        )

    @property
    def instance(self) -> FluxInstance | None:
        """The flux instance the jobs run in (None in graph mode, which runs nothing)."""
        return self._instance

    def _describe(self) -> dict[str, Any]:
        launcher = self._launcher
        return flux_job_info(
            self._options,
            spawner=self._spawner_class(),
            workers=self._worker_count(),
            pmi_mode=launcher.pmi_mode,
            flux_executor=launcher.flux_executor,
            flux_executor_nesting=launcher.nested,
            flux_log_files=launcher.log_files,
        )

    def _spawner_class(self) -> type:
        from xl_spawn import FluxJobSpawner

        return FluxJobSpawner

    def _check_task(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        self._launcher.check(resources, where=where)
        if self._max_cores is not None and resources.cpus > self._max_cores:
            raise ResourceDictError(
                f"{where}: this task needs {resources.cpus} cores (cores x threads_per_core) but the executor may "
                f"use only max_cores={self._max_cores}; lower the request or raise max_cores"
            )


def _one_node(instance: FluxInstance | None) -> bool:
    return instance is None or instance.nodes == 1


FLUX_CLUSTER_RULES = ExecutorRules(
    executor="FluxClusterExecutor",
    unsupported={
        "slurm_cmd_args": "these are srun arguments of SlurmJobExecutor; put # flux: lines in a submission_template",
    },
)


class FluxClusterExecutor(ClusterExecutor):
    """One ``flux batch`` job per call in the flux instance at ``FLUX_URI``; results come back through the cache
    directory (default ``./executorlib_cache``), so this process may exit (``shutdown(wait=False)``) and a later one
    on the same directory collects the results or re-attaches to the jobs still queued.

    The job script comes from a default template that needs no configuration (``# flux:`` directives: slots from
    ``cores``, cores per slot from ``threads_per_core``, GPUs per slot from ``gpus_per_core``, ``num_nodes``,
    ``exclusive``, ``run_time_max`` as ``--time-limit`` in seconds, ``priority`` as ``--urgency``), from
    ``resource_dict["submission_template"]`` (jinja2, pysqa's variable names), or from the ``queue.yaml`` of
    ``pysqa_config_directory`` (``queue_type: FLUX``). Other ``resource_dict`` keys are template variables; one the
    template in use does not read gives a warning with the closest valid key. A task of N cores runs under ``flux run
    --ntasks=N`` inside its batch job (``pmi_mode`` sets the job shell's pmi option); a batch job is an instance of
    its own, so the function may open a ``FluxJobExecutor`` inside it. A call taking another call's Future is
    submitted at once with ``--dependency=afterok:<id>``. A job that flux ends (time limit, ``flux cancel``, an
    unsatisfiable request) fails its Future with flux's state and exception and the end of its log.

    ``block_allocation=True``: a pool of ``max_workers`` workers, each one flux batch job, fed over sockets (with
    ``init_function``); their job directories live in ``<cache_directory>/workers``. ``dry_run(fn, ...)`` returns
    the job script ``submit`` would hand to flux batch. ``openmpi_oversubscribe`` is rejected (flux has none).

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
        pmi_mode: The flux job shell's ``pmi`` option of the ``flux run`` that starts a task with ``cores`` > 1 in its
            batch job (``pmix`` for Open MPI 5, ``simple``, ``pmi2``, ``simple,pmi2``); None (default): flux's default.
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
        record_dependency_graph: Keyword-only (not in executorlib 1.x). True: the run executes and records its graph as
            it goes; ``dependency_graph()`` returns the picture of the calls submitted so far. Default False.

    >>> with FluxClusterExecutor(cache_directory="./cache") as exe:  # doctest: +SKIP
    ...     exe.submit(sum, [1, 2], resource_dict={"run_time_max": 60}).result()
    3
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
        *,
        record_dependency_graph: bool = False,
    ) -> None:
        check_flux_pmi_mode(pmi_mode)
        check_no_oversubscribe("FluxClusterExecutor", openmpi_oversubscribe)
        config = os.fspath(pysqa_config_directory) if pysqa_config_directory is not None else None
        options = ExecutorOptions.of(locals())
        graph_only = options.graph() is not None
        # Outside any instance: a clear error before any file is written (graph mode runs nothing, needs none).
        self._instance = None if graph_only else current_instance("FluxClusterExecutor")
        from executorlib.launchers.flux_jobs import flux_batch_system

        def system() -> BatchSystem:
            assert self._instance is not None
            return flux_batch_system(self._instance, pysqa_config_directory=config, pmi_mode=pmi_mode)

        if block_allocation and not graph_only:
            self._compose_worker_jobs(options, FLUX_CLUSTER_RULES, system())
        else:
            self._compose_task_files(options, FLUX_CLUSTER_RULES, lambda: BatchJobLauncher(system()))

    @property
    def instance(self) -> FluxInstance | None:
        """The flux instance the batch jobs run in (None in graph mode, which runs nothing)."""
        return self._instance

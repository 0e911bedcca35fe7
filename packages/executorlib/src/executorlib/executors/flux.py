"""The Flux executors: ``FluxJobExecutor`` (a flux job per call or per pool worker, inside a flux instance) and
``FluxClusterExecutor`` (a ``flux batch`` job per call, results through the cache directory)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from executorlib.accounting import core_budget, pool_size
from executorlib.errors import ResourceDictError
from executorlib.executors.cluster import ClusterExecutor
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

    Parameters beyond SingleNodeExecutor's:

    - ``pmi_mode``: the job shell's ``pmi`` option (``pmix`` for Open MPI 5, ``simple``, ``pmi2``); None is
      flux's default.
    - ``flux_executor``: a ``flux.job.FluxExecutor`` of yours to submit through (else one shared per process).
    - ``flux_executor_nesting``: every worker is a flux instance of its own on its job's resources, so the
      function may submit flux jobs (or open a FluxJobExecutor) inside it.
    - ``flux_log_files``: write each worker's stdout and stderr to ``flux_<n>.out``/``flux_<n>.err`` in its
      working directory; else they stay in the instance (``flux job attach``) and the end of stderr is quoted
      when a worker dies.
    - ``hostname_localhost``: True binds the executor's socket to loopback, False to this host's name; None (the
      default) means loopback when the instance has one node.
    - ``wait``: accepted for executorlib 1.x; only True (jobs are always waited for, or cancelled).
    - ``openmpi_oversubscribe``: rejected (flux has no oversubscription).

    Outside any flux instance the constructor raises, naming ``FLUX_URI`` and ``flux start``. Closing the
    executor cancels the jobs it submitted; if this process is killed, its workers notice the lost connection
    and end, so their jobs end with them.

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
    template in use does not read is rejected with the closest valid key. A task of N cores runs under ``flux run
    --ntasks=N`` inside its batch job (``pmi_mode`` sets the job shell's pmi option); a batch job is an instance of
    its own, so the function may open a ``FluxJobExecutor`` inside it. A call taking another call's Future is
    submitted at once with ``--dependency=afterok:<id>``. A job that flux ends (time limit, ``flux cancel``, an
    unsatisfiable request) fails its Future with flux's state and exception and the end of its log.

    ``block_allocation=True``: a pool of ``max_workers`` workers, each one flux batch job, fed over sockets (with
    ``init_function``); their job directories live in ``<cache_directory>/workers``. ``dry_run(fn, ...)`` returns
    the job script ``submit`` would hand to flux batch. ``openmpi_oversubscribe`` is rejected (flux has none).

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

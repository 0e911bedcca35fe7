"""The file-mode executors: ``TestClusterExecutor`` (local processes) and the base of the cluster executors.

Every call is a task file in the cache directory (default ``./executorlib_cache``) run by a job: see
:mod:`executorlib.schedulers.file`. Keys of ``resource_dict`` beyond the executorlib ones (``partition``,
``memory_max``, ``queue``, ...) are handed to the job script template, as in executorlib 1.x; a key that is neither
one of those nor a variable of the template in use is rejected (it is most likely a misspelt resource).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, cast

from executorlib.caching import check_executor_resources
from executorlib.executors.base import BaseExecutor, Scheduler, register_caller_module
from executorlib.executors.options import check_pmi_mode
from executorlib.graph_mode import GraphRecorder, NoScheduler
from executorlib.resources import DEFAULTS, KEYS, BackendRules, Resources, merge, parse_resource_dict
from executorlib.schedulers.file import Backend, FileScheduler

DEFAULT_CACHE_DIRECTORY = "executorlib_cache"


def split_resource_dict(
    resource_dict: Mapping[str, Any] | None, *, where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The executorlib keys (checked) and the rest, which the job script template receives as variables."""
    if not resource_dict:
        return {}, {}
    if not isinstance(resource_dict, Mapping):
        parse_resource_dict(resource_dict, where=where)  # raises the usual message
    known = {k: v for k, v in resource_dict.items() if k in KEYS or k in ("openmpi_oversubscribe", "max_workers")}
    extras = {k: v for k, v in resource_dict.items() if k not in known}
    for name in extras:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"{where}: resource_dict key {name!r} is neither an executorlib resource nor a job template "
                "variable name (a Python identifier)"
            )
    return parse_resource_dict(known, where=where), extras


class FileExecutorBase(BaseExecutor):
    """What the file-mode executors share: task files, jobs through a backend, detach and re-attach."""

    _file_scheduler: FileScheduler | None

    def __init__(
        self,
        backend: Callable[[], Backend],
        *,
        executor: str,
        rules: BackendRules,
        max_workers: int | None,
        cache_directory: str | os.PathLike[str] | None,
        max_cores: int | None,
        resource_dict: Mapping[str, Any] | None,
        hostname_localhost: bool | None,
        init_function: Callable[[], Mapping[str, Any]] | None,
        disable_dependencies: bool,
        refresh_rate: float,
        plot_dependency_graph: bool,
        plot_dependency_graph_filename: str | None,
        export_workflow_filename: str | None,
        log_obj_size: bool,
        wait: bool,
    ) -> None:
        for name, value in (("max_workers", max_workers), ("max_cores", max_cores)):
            if value is not None:
                raise ValueError(
                    f"{executor}({name}={value!r}): the number of workers cannot be controlled in file mode, where "
                    "every call is a job of its own and the queue decides how many run; leave it out"
                )
        if hostname_localhost is not None:
            raise ValueError(
                f"{executor}(hostname_localhost={hostname_localhost!r}): jobs in file mode talk through the cache "
                "directory, not through sockets; leave it out"
            )
        if init_function is not None:
            raise ValueError(
                f"{executor}(init_function=...) needs block_allocation=True: it runs once per long-lived worker, and "
                "in file mode every call is a job of its own"
            )
        if not isinstance(wait, bool):
            raise TypeError(f"wait must be True or False, got {wait!r}")
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int | float) or refresh_rate <= 0:
            raise ValueError(f"refresh_rate must be a positive number of seconds, got {refresh_rate!r}")
        where = f"{executor}(resource_dict=...)"
        known, extras = split_resource_dict(resource_dict, where=where)
        resources = merge(DEFAULTS, known)
        rules.check(resources, where=where)
        check_executor_resources(resources, where=where)
        directory = cache_directory if cache_directory is not None else resources.cache_directory
        resources = merge(resources, {"cache_directory": os.path.abspath(directory or DEFAULT_CACHE_DIRECTORY)})
        self._extras = extras
        self._executor_name = executor
        self._wait = wait
        self._detached = False  # shut down with wait=False: later shutdowns (the exit handler's) leave the jobs
        graph_mode = plot_dependency_graph or plot_dependency_graph_filename is not None
        graph_mode = graph_mode or export_workflow_filename is not None
        graph = None
        scheduler: Any
        if graph_mode:
            graph = GraphRecorder(
                picture=os.fspath(plot_dependency_graph_filename) if plot_dependency_graph_filename else None,
                show=plot_dependency_graph,
                workflow=os.fspath(export_workflow_filename) if export_workflow_filename else None,
            )
            scheduler = NoScheduler()
            self._file_scheduler = None
        else:
            scheduler = self._file_scheduler = FileScheduler(backend())
            self._file_scheduler._backend.check(resources, extras, where=where)
        register_caller_module()
        super().__init__(
            cast(Scheduler, scheduler),
            resources=resources,
            rules=rules,
            fixed_resources=False,
            log_obj_size=log_obj_size,
            disable_dependencies=disable_dependencies,
            graph=graph,
        )

    def submit(  # type: ignore[override]
        self, fn: Callable[..., Any], /, *args: Any, resource_dict: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)`` as a job; ``resource_dict`` overrides the executor's resources (and
        template variables) for this call."""
        if self._file_scheduler is None and self._graph is None:  # block_allocation: a socket pool
            return super().submit(fn, *args, resource_dict=resource_dict, **kwargs)
        if not callable(fn):
            raise TypeError(f"submit() needs a callable as its first argument, got {type(fn).__name__} {fn!r}")
        with self._shutdown_lock:
            if self._is_shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        where = "submit(..., resource_dict=...)"
        known, extras = split_resource_dict(resource_dict, where=where)
        resources = merge(self._resources, known)
        if known:
            self._rules.check(resources, where=where)
        if self._graph is not None:
            return self._graph.record(fn, args, kwargs)
        if self._disable_dependencies:
            from executorlib.dependencies import upstream_futures

            if upstream_futures(args, kwargs):
                raise ValueError(
                    f"submit({getattr(fn, '__name__', fn)!r}, ...) got Future argument(s), but this executor was "
                    "created with disable_dependencies=True; pass the results instead, or drop disable_dependencies"
                )
        future: Future[Any] = Future()
        assert self._file_scheduler is not None
        extras = {**self._extras, **extras}
        if resource_dict:  # rejected here, not in the Future: a misspelt key, a broken template
            self._file_scheduler._backend.check(resources, extras, where=where)
        self._file_scheduler.submit_call(fn, args, kwargs, resources, extras, future)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``wait=True``: until every job ended. ``wait=False``: return at once and leave the jobs running (a
        later executor on the same cache directory collects their results). ``cancel_futures=True``: cancel the
        Futures not done and stop their jobs (``scancel``, or terminate the local process)."""
        if self._file_scheduler is None and self._graph is None:  # block_allocation: a socket pool
            super().shutdown(wait and self._wait, cancel_futures=cancel_futures)
            return
        wait = wait and self._wait
        with self._shutdown_lock:
            already, self._is_shutdown = self._is_shutdown, True
            detached, self._detached = self._detached, self._detached or not wait
        if self._graph is not None:
            if not already:
                self._graph.write()
            return
        if already and not cancel_futures and (detached or not wait):
            return
        assert self._file_scheduler is not None
        self._file_scheduler.shutdown(wait, cancel_futures=cancel_futures)

    def _check_task(self, resources: Resources, *, where: str) -> None:
        if self._file_scheduler is not None:
            self._file_scheduler._backend.check(resources, self._extras, where=where)


TEST_CLUSTER_RULES = BackendRules(executor="TestClusterExecutor", unsupported={})


class TestClusterExecutor(FileExecutorBase):
    """The file mode of the cluster executors with local processes as jobs, for debugging the cluster path.

    Each call is written to ``<cache_directory>/<key>_i.h5`` and run by ``python -m xl_cache.worker`` in a process
    of its own (``mpiexec -n cores`` for MPI tasks); its result lands in ``<key>_o.h5``. A task taking another's
    Future starts when that task's process ended. Results are reused: a call whose output is in the cache starts
    no process, and a call whose process still runs (started by an executor that detached with
    ``shutdown(wait=False)``, even in another Python process) is re-attached to. Queue-only ``resource_dict`` keys
    (``run_time_max``, ``submission_template``, ``partition``, ...) are accepted and ignored, so code written for
    ``SlurmClusterExecutor`` runs unchanged; any other key must be a variable of the ``submission_template``
    given, else it is rejected with the closest valid key.

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
        from executorlib.schedulers.local_jobs import LocalProcessBackend

        super().__init__(
            lambda: LocalProcessBackend(openmpi_oversubscribe=openmpi_oversubscribe),
            executor="TestClusterExecutor",
            rules=TEST_CLUSTER_RULES,
            max_workers=max_workers,
            cache_directory=cache_directory,
            max_cores=max_cores,
            resource_dict=resource_dict,
            hostname_localhost=hostname_localhost,
            init_function=init_function,
            disable_dependencies=disable_dependencies,
            refresh_rate=refresh_rate,
            plot_dependency_graph=plot_dependency_graph,
            plot_dependency_graph_filename=plot_dependency_graph_filename,
            export_workflow_filename=export_workflow_filename,
            log_obj_size=log_obj_size,
            wait=wait,
        )


SLURM_CLUSTER_RULES = BackendRules(
    executor="SlurmClusterExecutor",
    unsupported={
        "gpus_per_core": "the job script has no GPU line; name GPUs in a submission_template (e.g. #SBATCH --gpus=...)",
        "slurm_cmd_args": "these are srun arguments of SlurmJobExecutor; put #SBATCH lines in a submission_template",
    },
)


class SlurmClusterExecutor(FileExecutorBase):
    """One ``sbatch`` job per call, submitted from the login node; results come back through the cache directory.

    The job script comes from a default template that needs no configuration (partition, memory and time limit
    only when given), from ``resource_dict["submission_template"]`` (jinja2, pysqa's variable names), or from
    the ``queue.yaml`` of ``pysqa_config_directory``. Keys of ``resource_dict`` that are not executorlib resources
    (``partition``, ``memory_max``, ``job_name``, ...) are template variables; one the template in use does not
    read is rejected at construction or ``submit()`` with the closest valid key. A call taking another call's
    Future is submitted at once with ``--dependency=afterok:<ids>``, so this process may exit
    (``shutdown(wait=False)``) and a later one, submitting the same calls with the same cache directory, gets the
    cached results or re-attaches to the jobs still queued; no call ever runs twice. A job that dies (time limit,
    memory, node failure, ``scancel``) fails its Future with SLURM's state, the job id and the end of its log.
    A failed ``sbatch`` raises :class:`xl_spawn.SubmissionError` (a ``CalledProcessError``) whose ``output`` is
    sbatch's own message; it is not cached. ``pmi_mode`` adds ``srun --mpi=<mode>`` around MPI tasks (cores > 1).
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
        from executorlib.schedulers.slurm_jobs import SlurmQueueBackend

        config = os.fspath(pysqa_config_directory) if pysqa_config_directory is not None else None
        graph_mode = plot_dependency_graph or plot_dependency_graph_filename is not None
        if block_allocation and not (graph_mode or export_workflow_filename is not None):
            self._start_worker_jobs(
                max_workers=max_workers,
                max_cores=max_cores,
                cache_directory=cache_directory,
                resource_dict=resource_dict,
                config=config,
                pmi_mode=pmi_mode,
                hostname_localhost=hostname_localhost,
                init_function=init_function,
                disable_dependencies=disable_dependencies,
                log_obj_size=log_obj_size,
                wait=wait,
            )
            return
        super().__init__(
            lambda: SlurmQueueBackend(pysqa_config_directory=config, pmi_mode=pmi_mode),
            executor="SlurmClusterExecutor",
            rules=SLURM_CLUSTER_RULES,
            max_workers=max_workers,
            cache_directory=cache_directory,
            max_cores=max_cores,
            resource_dict=resource_dict,
            hostname_localhost=hostname_localhost,
            init_function=init_function,
            disable_dependencies=disable_dependencies,
            refresh_rate=refresh_rate,
            plot_dependency_graph=plot_dependency_graph,
            plot_dependency_graph_filename=plot_dependency_graph_filename,
            export_workflow_filename=export_workflow_filename,
            log_obj_size=log_obj_size,
            wait=wait,
        )

    def _start_worker_jobs(
        self,
        *,
        max_workers: int | None,
        max_cores: int | None,
        cache_directory: str | None,
        resource_dict: Mapping[str, Any] | None,
        config: str | None,
        pmi_mode: str | None,
        hostname_localhost: bool | None,
        init_function: Callable[[], Mapping[str, Any]] | None,
        disable_dependencies: bool,
        log_obj_size: bool,
        wait: bool,
    ) -> None:
        """``block_allocation=True``: a pool of ``max_workers`` workers, each one batch job, fed over sockets by
        the same scheduler as every other pool; their job directories and key files live in
        ``<cache_directory>/workers`` (private, 0700). Results are cached only when ``cache_directory`` is given."""
        from executorlib.accounting import pool_size
        from executorlib.schedulers.batch_workers import BatchWorkerLaunch
        from executorlib.schedulers.block import BlockAllocationScheduler
        from executorlib.schedulers.slurm_jobs import check_job_script_keys

        if not isinstance(wait, bool):
            raise TypeError(f"wait must be True or False, got {wait!r}")
        where = "SlurmClusterExecutor(resource_dict=...)"
        known, extras = split_resource_dict(resource_dict, where=where)
        resources = merge(DEFAULTS, known)
        SLURM_CLUSTER_RULES.check(resources, where=where)
        check_executor_resources(resources, where=where)
        directory = os.path.abspath(cache_directory or resources.cache_directory or DEFAULT_CACHE_DIRECTORY)
        if cache_directory is not None:
            resources = merge(resources, {"cache_directory": directory})
        workers = pool_size(max_workers, max_cores, resources.slots, max_workers or max_cores or 1)
        launch = BatchWorkerLaunch(
            os.path.join(directory, "workers"),
            resources=resources,
            extras=extras,
            pysqa_config_directory=config,
            pmi_mode=pmi_mode,
        )
        check_job_script_keys(launch.queue, resources, extras, where=where)
        self._extras = extras
        self._executor_name = "SlurmClusterExecutor"
        self._wait = wait
        self._file_scheduler = None
        register_caller_module()
        scheduler = BlockAllocationScheduler(
            workers=workers,
            resources=resources,
            init_function=init_function,
            restart_limit=0,
            localhost=bool(hostname_localhost),  # the jobs may run on other nodes: the host name by default
            launch=launch,
            gpus=None,  # the batch system assigns each job its devices
        )
        BaseExecutor.__init__(
            self,
            scheduler,
            resources=resources,
            rules=SLURM_CLUSTER_RULES,
            fixed_resources=True,
            log_obj_size=log_obj_size,
            disable_dependencies=disable_dependencies,
        )

    def dry_run(
        self, fn: Callable[..., Any], /, *args: Any, resource_dict: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> str:
        """The job script ``submit`` would hand to sbatch for this call (nothing is written or submitted)."""
        from xl_serial import function_name, task_key

        from executorlib.schedulers.file import FileTask
        from executorlib.schedulers.slurm_jobs import SlurmQueueBackend

        known, extras = split_resource_dict(resource_dict, where="dry_run(..., resource_dict=...)")
        resources = merge(self._resources, known)
        scheduler = self._file_scheduler
        if scheduler is None:
            raise RuntimeError("dry_run() shows the job script of a call in file mode (block_allocation=False)")
        assert isinstance(scheduler._backend, SlurmQueueBackend)
        extras = {**self._extras, **extras}
        scheduler._backend.check(resources, extras, where="dry_run(..., resource_dict=...)")
        args, kwargs, upstream, _ = scheduler._link_arguments(args, kwargs)
        directory = os.path.abspath(resources.cache_directory or DEFAULT_CACHE_DIRECTORY)
        key = resources.cache_key or task_key(fn, args, kwargs)
        task = FileTask(key, directory, function_name(fn), resources, extras)
        return scheduler._backend.dry_run(task, [up for up in upstream if not up.ended])

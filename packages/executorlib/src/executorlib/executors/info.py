"""``executor.info`` as executorlib 1.x shows it: the configuration the user gave, not derived values (compat-1x.md
§3). Users compare it with ``==``, so the keys are exactly 1.x's. Derived values (core budget, running jobs) are
``executor.status()``'s business.

Pure functions of the constructor's arguments; the executor adds the live worker count of a pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executorlib.executors.options import ExecutorOptions

#: resource_dict keys a 1.x SingleNodeExecutor leaves out of ``info`` (it drops them from its worker's resources).
SINGLE_NODE_HIDDEN = frozenset({"threads_per_core", "gpus_per_core", "slurm_cmd_args"})


def interactive_info(
    options: ExecutorOptions,
    *,
    spawner: Any,
    workers: int | None,
    slurm: bool = False,
    pmi_mode: str | None = None,
) -> dict[str, Any]:
    """The info of an executor whose workers talk over sockets (SingleNode, SlurmJob, Flux job, a pool of batch
    jobs). ``workers``: the pool's current size with block allocation (ignored otherwise). ``slurm``: SlurmJob's
    shape, which keeps the srun keys with their defaults and adds ``pmi_mode``.

    >>> info = interactive_info(ExecutorOptions(resource_dict={"cwd": "/run1", "threads_per_core": 2}),
    ...                         spawner="S", workers=None)
    >>> info["cwd"], "threads_per_core" in info, info["max_workers"]
    ('/run1', False, None)
    """
    given: Mapping[str, Any] = options.resource_dict or {}
    info = {key: value for key, value in given.items() if slurm or key not in SINGLE_NODE_HIDDEN}
    info.setdefault("cores", 1)
    if slurm:
        info.setdefault("threads_per_core", 1)
        info.setdefault("gpus_per_core", 0)
    info.setdefault("cwd", None)
    info["openmpi_oversubscribe"] = options.openmpi_oversubscribe
    if slurm:
        info.setdefault("slurm_cmd_args", [])
    info["cache_directory"] = options.cache_directory
    info["hostname_localhost"] = options.hostname_localhost
    info["log_obj_size"] = options.log_obj_size
    if slurm:
        info["pmi_mode"] = pmi_mode
    return _with_workers(info, options, spawner=spawner, workers=workers)


def _with_workers(
    info: dict[str, Any], options: ExecutorOptions, *, spawner: Any, workers: int | None
) -> dict[str, Any]:
    """The keys every socket executor's info ends with, in 1.x's order: the pool's (``init_function``, the spawner,
    ``queue_join_on_shutdown``, ``restart_limit``, its size ``workers``), else the spawner and the two limits."""
    if options.block_allocation:
        info["init_function"] = options.init_function
    info["spawner"] = spawner
    if options.block_allocation:
        info["queue_join_on_shutdown"] = False
        info["restart_limit"] = options.restart_limit
        info["max_workers"] = workers
    else:
        info["max_cores"] = options.max_cores
        info["max_workers"] = options.max_workers
    return info


def flux_job_info(
    options: ExecutorOptions,
    *,
    spawner: Any,
    workers: int | None,
    pmi_mode: str | None,
    flux_executor: Any,
    flux_executor_nesting: bool,
    flux_log_files: bool,
) -> dict[str, Any]:
    """The info of a FluxJobExecutor: 1.x keeps the resource keys a flux job honours (with their defaults, no
    ``openmpi_oversubscribe``) and adds its flux options after ``log_obj_size``.

    >>> info = flux_job_info(ExecutorOptions(), spawner="S", workers=None, pmi_mode=None, flux_executor=None,
    ...                      flux_executor_nesting=False, flux_log_files=True)
    >>> info["threads_per_core"], info["flux_log_files"], "openmpi_oversubscribe" in info
    (1, True, False)
    """
    info: dict[str, Any] = dict(options.resource_dict or {})
    for key, value in (("cores", 1), ("threads_per_core", 1), ("gpus_per_core", 0), ("cwd", None)):
        info.setdefault(key, value)
    info["cache_directory"] = options.cache_directory
    info["hostname_localhost"] = options.hostname_localhost
    info["log_obj_size"] = options.log_obj_size
    info["pmi_mode"] = pmi_mode
    info["flux_executor"] = flux_executor
    info["flux_executor_nesting"] = flux_executor_nesting
    info["flux_log_files"] = flux_log_files
    return _with_workers(info, options, spawner=spawner, workers=workers)


def file_mode_info(
    options: ExecutorOptions,
    *,
    resources: Mapping[str, Any],
    execute_function: Any,
    terminate_function: Any,
    validate_function: Any,
    pysqa_config_directory: str | None = None,
    backend: str | None = None,
    pmi_mode: str | None = None,
) -> dict[str, Any]:
    """The info of a file-mode executor (best effort, as in 1.x): ``resources`` are the executor's own, to which
    1.x's file-mode defaults are added (``cache_directory``, ``exclusive`` and the rest)."""
    executor_kwargs = dict(resources)
    defaults = {"cores": 1, "cwd": None, "cache_directory": "executorlib_cache", "exclusive": False}
    for key, value in defaults.items():
        executor_kwargs.setdefault(key, value)
    executor_kwargs.setdefault("openmpi_oversubscribe", options.openmpi_oversubscribe)
    return {
        "executor_kwargs": executor_kwargs,
        "execute_function": execute_function,
        "terminate_function": terminate_function,
        "validate_function": validate_function,
        "pysqa_config_directory": pysqa_config_directory,
        "backend": backend,
        "disable_dependencies": options.disable_dependencies,
        "pmi_mode": pmi_mode,
        "refresh_rate": options.refresh_rate,
        "wait": options.wait,
    }

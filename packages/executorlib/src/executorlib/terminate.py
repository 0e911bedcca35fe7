"""``terminate_tasks_in_cache`` and ``terminate_task_in_cache``: stop the jobs of the pending tasks in a cache
directory (executorlib 1.x)."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any


def terminate_tasks_in_cache(
    cache_directory: str | os.PathLike[str],
    pysqa_config_directory: str | None = None,
    backend: str | None = None,
    *,
    config_directory: str | None = None,
) -> list[dict[str, Any]]:
    """Cancel the job of every pending task (``<key>_i.h5``) that has a recorded ``queue_id``, and delete every
    pending task file, also those without a job id yet; return their entries. ``backend="slurm"`` cancels with one
    ``scancel`` call; ``None`` means local processes (``TestClusterExecutor``), each checked to be that task's
    worker before it is signalled. Finished results stay in the cache. ``config_directory`` is our older name of
    ``pysqa_config_directory`` (1.x's)."""
    return _terminate(cache_directory, None, _config(pysqa_config_directory, config_directory), backend)


def terminate_task_in_cache(
    cache_directory: str | os.PathLike[str],
    cache_key: str,
    pysqa_config_directory: str | None = None,
    backend: str | None = None,
    *,
    config_directory: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`terminate_tasks_in_cache` for the one task ``cache_key``."""
    return _terminate(cache_directory, cache_key, _config(pysqa_config_directory, config_directory), backend)


def _config(pysqa_config_directory: str | None, config_directory: str | None) -> str | None:
    if (
        pysqa_config_directory is not None
        and config_directory is not None
        and (pysqa_config_directory != config_directory)
    ):
        raise ValueError(
            f"pysqa_config_directory={pysqa_config_directory!r} and config_directory={config_directory!r} name the "
            "same setting (config_directory is the older name); pass only pysqa_config_directory"
        )
    return pysqa_config_directory if pysqa_config_directory is not None else config_directory


def _terminate(
    cache_directory: str | os.PathLike[str], cache_key: str | None, config_directory: str | None, backend: str | None
) -> list[dict[str, Any]]:
    from xl_cache import QUEUE_ID_FILE_NAME, job_directory, list_entries, read_queue_id_file
    from xl_spawn import pid_runs

    if backend not in (None, "slurm"):
        raise ValueError(f"backend must be None (local processes) or 'slurm', got {backend!r}")
    pending: list[tuple[Any, int | None]] = []
    for entry in list_entries(cache_directory):
        if entry.status != "pending" or (cache_key is not None and entry.key != cache_key):
            continue
        # a batch job's id is in the task file; a local process's pid in the sidecar beside it
        sidecar = os.path.join(job_directory(cache_directory, entry.key), QUEUE_ID_FILE_NAME)
        queue_id = entry.queue_id if entry.queue_id is not None else read_queue_id_file(sidecar)
        pending.append((entry, queue_id))
    jobs = [(entry, queue_id) for entry, queue_id in pending if queue_id is not None]
    if backend == "slurm":
        from xl_spawn import SlurmQueue

        if jobs:
            SlurmQueue(pysqa_config_directory=config_directory).cancel([queue_id for _, queue_id in jobs])
    else:
        for entry, pid in jobs:
            if pid is not None and pid_runs(pid, os.path.basename(entry.path)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
    # every pending task file goes, also those queued without a job id yet (1.x): none of them will run now
    records = []
    for entry, queue_id in pending:
        records.append({"cache_key": entry.key, "queue_id": queue_id, "filename": entry.path})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
    return records

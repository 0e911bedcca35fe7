"""``terminate_tasks_in_cache``: stop the jobs of every pending task in a cache directory (executorlib 1.x)."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any


def terminate_tasks_in_cache(
    cache_directory: str | os.PathLike[str], config_directory: str | None = None, backend: str | None = None
) -> list[dict[str, Any]]:
    """Cancel the job of every pending task (``<key>_i.h5`` with a recorded ``queue_id``) and delete its task
    file; return the entries that were stopped. ``backend="slurm"`` cancels with one ``scancel`` call;
    ``None`` means local processes (``TestClusterExecutor``), each checked to be that task's worker before it is
    signalled. Finished results stay in the cache."""
    from xl_cache import list_entries
    from xl_spawn import pid_runs

    if backend not in (None, "slurm"):
        raise ValueError(f"backend must be None (local processes) or 'slurm', got {backend!r}")
    pending = [entry for entry in list_entries(cache_directory) if entry.status == "pending"]
    stopped = [entry for entry in pending if entry.queue_id is not None]
    if backend == "slurm":
        from xl_spawn.queue import SlurmQueue

        ids = [entry.queue_id for entry in stopped if entry.queue_id is not None]
        if ids:
            SlurmQueue(pysqa_config_directory=config_directory).cancel(ids)
    else:
        for entry in stopped:
            assert entry.queue_id is not None
            if pid_runs(entry.queue_id, os.path.basename(entry.path)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(entry.queue_id, signal.SIGTERM)
    records = []
    for entry in stopped:
        records.append({"cache_key": entry.key, "queue_id": entry.queue_id, "filename": entry.path})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
    return records

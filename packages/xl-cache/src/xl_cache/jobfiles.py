"""The files of a task's job directory ``<cache>/<key>/``: the queue-id sidecar, and reading a job's log.

Launchers (a local process, an ``sbatch`` job) record the job id beside the task file when they learn it only
once the job runs; the worker reads it back into the output. One place names the sidecar and its environment
variable, so every launcher and the worker agree on them. The log's name is the job script's (``xl_spawn``).
"""

from __future__ import annotations

import os
import threading

__all__ = [
    "QUEUE_ID_FILE_NAME",
    "QUEUE_ID_FILE_VARIABLE",
    "STDERR_LOG_NAME",
    "job_directory",
    "log_tail",
    "read_queue_id_file",
    "write_queue_id_file",
]

#: The job id as text, in its job directory, for launchers that learn the id only once the job runs.
QUEUE_ID_FILE_NAME = "queue_id"
#: Tells the worker (``python -m xl_cache.worker``) where the queue-id sidecar is.
QUEUE_ID_FILE_VARIABLE = "XL_CACHE_QUEUE_ID_FILE"
#: A copy of a local job's stderr beside its queue-id sidecar, kept while the job runs (the launcher shows the
#: stderr as it comes and keeps this copy, whose tail names a dead job's last words); the worker removes it with
#: the sidecar once the output is written, so a finished task leaves only its output.
STDERR_LOG_NAME = "stderr"


def job_directory(cache_directory: str | os.PathLike[str], key: str) -> str:
    """``<cache>/<key>/``: a task's job directory (its job script, its log, its queue-id sidecar)."""
    return os.path.join(os.fspath(cache_directory), key)


def write_queue_id_file(path: str | os.PathLike[str], queue_id: int) -> None:
    """Write ``queue_id`` to ``path`` atomically: a reader sees the whole id or no file."""
    if isinstance(queue_id, bool) or not isinstance(queue_id, int) or queue_id < 0:
        raise ValueError(f"queue_id must be a job id (an int >= 0), got {queue_id!r}")
    path = os.fspath(path)
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(str(queue_id))
    os.replace(temporary, path)


def read_queue_id_file(path: str | os.PathLike[str] | None) -> int | None:
    """The id :func:`write_queue_id_file` wrote to ``path``; None when there is no such file or no id in it."""
    if not path:
        return None
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def log_tail(path: str | os.PathLike[str], *, max_bytes: int = 16384, lines: int | None = None) -> str:
    """The end of the log at ``path``: its last ``max_bytes`` bytes, of those the last ``lines`` lines (None: all);
    "" when it cannot be read. A dead job's log ends with its fate (slurmstepd's banner, a traceback)."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be an int >= 1, got {max_bytes!r}")
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - max_bytes))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return text if lines is None else "\n".join(text.splitlines()[-lines:])

"""xl-cache: the HDF5 task cache of executorlib, usable on its own.

One file per task in a cache directory: ``<key>_i.h5`` while it is pending, ``<key>_o.h5`` once it finished,
each written to a temporary name and renamed, stamped with the format, Python and cloudpickle versions.

- :mod:`xl_cache.tasks`: :func:`write_input`, :func:`write_output`, :func:`load_result` (one file open per
  lookup), :func:`get_future_from_cache`, :func:`remove`, :func:`record_queue_id`.
- :func:`check_key`: what a key may be (a relative path inside the cache directory; ``/`` makes sub-folders).
- :mod:`xl_cache.entries`: :func:`get_cache_data`, :func:`list_entries`, :func:`scan`, :func:`to_dataframe`.
- :mod:`xl_cache.jobfiles`: a task's job directory: reading its log (:func:`log_tail`), and the queue-id
  sidecar (:func:`write_queue_id_file`, :func:`read_queue_id_file`, :data:`QUEUE_ID_FILE_VARIABLE`).
- :mod:`xl_cache.worker`: ``python -m xl_cache.worker <key>_i.h5`` runs one pending task (file mode).
- ``python -m xl_cache ls|show|rm|gc``: the command line.

Imports only xl-serial among the project packages. Names load on first use; h5py is imported only by the
functions that touch files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xl_cache.entries import (
        CacheEntry,
        CacheWarning,
        DamagedFile,
        get_cache_data,
        list_entries,
        read_entry,
        scan,
        to_dataframe,
    )
    from xl_cache.errors import (
        CacheCorruptError,
        CacheError,
        CachePendingError,
        CacheTrustError,
        CacheVersionError,
    )
    from xl_cache.jobfiles import (
        QUEUE_ID_FILE_NAME,
        QUEUE_ID_FILE_VARIABLE,
        STDERR_LOG_NAME,
        job_directory,
        log_tail,
        read_queue_id_file,
        write_queue_id_file,
    )
    from xl_cache.layout import FORMAT_VERSION, check_key
    from xl_cache.refs import OutputRef, resolve_refs
    from xl_cache.tasks import (
        Outcome,
        get_future_from_cache,
        input_path,
        load_result,
        output_path,
        record_queue_id,
        remove,
        write_input,
        write_output,
    )
    from xl_cache.worker import run_task_file

_LAZY = {
    "CacheEntry": "entries",
    "CacheWarning": "entries",
    "DamagedFile": "entries",
    "get_cache_data": "entries",
    "list_entries": "entries",
    "read_entry": "entries",
    "scan": "entries",
    "to_dataframe": "entries",
    "CacheCorruptError": "errors",
    "CacheError": "errors",
    "CachePendingError": "errors",
    "CacheTrustError": "errors",
    "CacheVersionError": "errors",
    "QUEUE_ID_FILE_NAME": "jobfiles",
    "QUEUE_ID_FILE_VARIABLE": "jobfiles",
    "STDERR_LOG_NAME": "jobfiles",
    "job_directory": "jobfiles",
    "log_tail": "jobfiles",
    "read_queue_id_file": "jobfiles",
    "write_queue_id_file": "jobfiles",
    "FORMAT_VERSION": "layout",
    "check_key": "layout",
    "OutputRef": "refs",
    "resolve_refs": "refs",
    "Outcome": "tasks",
    "get_future_from_cache": "tasks",
    "input_path": "tasks",
    "load_result": "tasks",
    "output_path": "tasks",
    "record_queue_id": "tasks",
    "remove": "tasks",
    "write_input": "tasks",
    "write_output": "tasks",
    "run_task_file": "worker",
}

__all__ = [
    "FORMAT_VERSION",
    "QUEUE_ID_FILE_NAME",
    "QUEUE_ID_FILE_VARIABLE",
    "STDERR_LOG_NAME",
    "CacheCorruptError",
    "CacheEntry",
    "CacheError",
    "CachePendingError",
    "CacheTrustError",
    "CacheVersionError",
    "CacheWarning",
    "DamagedFile",
    "Outcome",
    "OutputRef",
    "check_key",
    "get_cache_data",
    "get_future_from_cache",
    "input_path",
    "job_directory",
    "list_entries",
    "load_result",
    "log_tail",
    "output_path",
    "read_entry",
    "read_queue_id_file",
    "record_queue_id",
    "remove",
    "resolve_refs",
    "run_task_file",
    "scan",
    "to_dataframe",
    "write_input",
    "write_output",
    "write_queue_id_file",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("xl-cache")
    if name in _LAZY:
        return getattr(importlib.import_module(f"xl_cache.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'xl_cache' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__, "__version__"])

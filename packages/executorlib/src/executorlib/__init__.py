"""executorlib: up-scale Python functions from a laptop to HPC clusters through ``concurrent.futures``.

>>> from executorlib import SingleNodeExecutor
>>> with SingleNodeExecutor() as exe:
...     exe.submit(sum, [1, 1]).result()
2
"""

from __future__ import annotations

import os
from typing import Any

# No NullHandler on the "executorlib" logger: as in executorlib 1.x, its warnings (log_obj_size's sizes, a worker
# restarted) reach Python's last-resort handler on stderr unless the application configures logging.

if os.environ.get("EXECUTORLIB_LOG"):  # the one switch for a log on stderr (see executorlib.logs)
    from executorlib.logs import configure_from_environment

    configure_from_environment()

_LAZY = {
    "BaseExecutor": "executorlib.executors.base",
    "FluxClusterExecutor": "executorlib.executors.flux",
    "FluxJobExecutor": "executorlib.executors.flux",
    "SingleNodeExecutor": "executorlib.executors.single",
    "SlurmClusterExecutor": "executorlib.executors.cluster",
    "terminate_task_in_cache": "executorlib.terminate",
    "terminate_tasks_in_cache": "executorlib.terminate",
    "SlurmJobExecutor": "executorlib.executors.slurm",
    "get_cache_data": "xl_cache",
    "get_future_from_cache": "xl_cache",
    "get_item_from_future": "xl_graph",
    "log_to_stderr": "executorlib.logs",
    "progress": "executorlib.progress_bar",
    "split_future": "xl_graph",
}

__all__ = [
    "BaseExecutor",
    "FluxClusterExecutor",
    "FluxJobExecutor",
    "SingleNodeExecutor",
    "SlurmClusterExecutor",
    "SlurmJobExecutor",
    "get_cache_data",
    "get_future_from_cache",
    "get_item_from_future",
    "log_to_stderr",
    "progress",
    "split_future",
    "terminate_tasks_in_cache",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("executorlib")
    # Heavy imports (zmq) wait until an executor class is first used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'executorlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_LAZY})

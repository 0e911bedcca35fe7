"""xl-serial: serialization of tasks and results, stable task keys, remote errors.

The bottom layer of executorlib: it imports no other project package. Names load on first use, so a worker
process pays only for what it touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xl_serial.keys import canonical_bytes, function_name, task_key
    from xl_serial.pickling import (
        OUT_OF_BAND_MIN_BYTES,
        Frame,
        dumps,
        frames_nbytes,
        function_reference,
        function_stream,
        loads,
        register_by_value,
        resolve_function,
        resolve_reference,
    )
    from xl_serial.remote_error import RemoteError, RemoteException, RemoteTraceback, capture, error_report

_LAZY = {
    "canonical_bytes": "keys",
    "function_name": "keys",
    "task_key": "keys",
    "OUT_OF_BAND_MIN_BYTES": "pickling",
    "Frame": "pickling",
    "dumps": "pickling",
    "frames_nbytes": "pickling",
    "function_reference": "pickling",
    "function_stream": "pickling",
    "resolve_function": "pickling",
    "resolve_reference": "pickling",
    "loads": "pickling",
    "register_by_value": "pickling",
    "RemoteError": "remote_error",
    "RemoteException": "remote_error",
    "RemoteTraceback": "remote_error",
    "capture": "remote_error",
    "error_report": "remote_error",
}

__all__ = [
    "OUT_OF_BAND_MIN_BYTES",
    "Frame",
    "RemoteError",
    "RemoteException",
    "RemoteTraceback",
    "canonical_bytes",
    "capture",
    "dumps",
    "error_report",
    "frames_nbytes",
    "function_name",
    "function_reference",
    "function_stream",
    "loads",
    "register_by_value",
    "resolve_function",
    "resolve_reference",
    "task_key",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("xl-serial")
    if name in _LAZY:
        return getattr(importlib.import_module(f"xl_serial.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'xl_serial' has no attribute {name!r}")

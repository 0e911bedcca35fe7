"""xl-serial: serialization of tasks and results, stable task keys, remote errors.

The bottom layer of executorlib: it imports no other project package.
"""

from importlib.metadata import version as _version

from xl_serial.keys import canonical_bytes, function_name, task_key
from xl_serial.pickling import OUT_OF_BAND_MIN_BYTES, Frame, dumps, frames_nbytes, loads, register_by_value
from xl_serial.remote_error import RemoteError, RemoteException, RemoteTraceback, capture

__version__ = _version("xl-serial")

__all__ = [
    "OUT_OF_BAND_MIN_BYTES",
    "Frame",
    "RemoteError",
    "RemoteException",
    "RemoteTraceback",
    "canonical_bytes",
    "capture",
    "dumps",
    "frames_nbytes",
    "function_name",
    "loads",
    "register_by_value",
    "task_key",
]

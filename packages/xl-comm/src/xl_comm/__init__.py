"""xl-comm: the authenticated executor-worker protocol on zmq, and the worker loop.

Executor side: :class:`Hub`. Worker side: ``python -m xl_comm.worker``. Messages: :mod:`xl_comm.messages`.
Every name other packages use is exported here; the submodules are this package's own business. Names load on
first use, so the worker does not import the executor side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xl_comm.assist import AssistedFuture
    from xl_comm.framing import (
        KEY_BYTES,
        PROTOCOL_VERSION,
        AuthenticationError,
        Header,
        ProtocolError,
        open_frames,
        pack_task,
        seal,
    )
    from xl_comm.hub import Hub, HubHandler
    from xl_comm.keys import KEY_FILE_ENV, discard_key_file
    from xl_comm.messages import Failure, Hello, Init, Kind, Result, Shutdown, Task
    from xl_comm.team import EXIT_TEAM_ABORTED
    from xl_comm.worker_loop import ExecutorGuard

_LAZY = {
    "AssistedFuture": "assist",
    "KEY_BYTES": "framing",
    "PROTOCOL_VERSION": "framing",
    "Header": "framing",
    "open_frames": "framing",
    "seal": "framing",
    "AuthenticationError": "framing",
    "ProtocolError": "framing",
    "pack_task": "framing",
    "Hub": "hub",
    "HubHandler": "hub",
    "KEY_FILE_ENV": "keys",
    "discard_key_file": "keys",
    "Failure": "messages",
    "Hello": "messages",
    "Init": "messages",
    "Kind": "messages",
    "Result": "messages",
    "Shutdown": "messages",
    "Task": "messages",
    "EXIT_TEAM_ABORTED": "team",
    "ExecutorGuard": "worker_loop",
}

__all__ = [
    "EXIT_TEAM_ABORTED",
    "KEY_BYTES",
    "KEY_FILE_ENV",
    "PROTOCOL_VERSION",
    "AssistedFuture",
    "AuthenticationError",
    "ExecutorGuard",
    "Failure",
    "Header",
    "Hello",
    "Hub",
    "HubHandler",
    "Init",
    "Kind",
    "ProtocolError",
    "Result",
    "Shutdown",
    "Task",
    "discard_key_file",
    "open_frames",
    "pack_task",
    "seal",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("xl-comm")
    if name in _LAZY:
        return getattr(importlib.import_module(f"xl_comm.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'xl_comm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__, "__version__"])

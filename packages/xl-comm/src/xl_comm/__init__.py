"""xl-comm: the authenticated executor-worker protocol on zmq, and the worker loop.

Executor side: :class:`Hub`. Worker side: ``python -m xl_comm.worker``. Messages: :mod:`xl_comm.messages`.
Names load on first use, so the worker does not import the executor side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xl_comm.assist import AssistedFuture
    from xl_comm.framing import PROTOCOL_VERSION, AuthenticationError, ProtocolError
    from xl_comm.hub import Hub, HubHandler
    from xl_comm.messages import Failure, Hello, Init, Result, Shutdown, Task

_LAZY = {
    "AssistedFuture": "assist",
    "PROTOCOL_VERSION": "framing",
    "AuthenticationError": "framing",
    "ProtocolError": "framing",
    "Hub": "hub",
    "HubHandler": "hub",
    "Failure": "messages",
    "Hello": "messages",
    "Init": "messages",
    "Result": "messages",
    "Shutdown": "messages",
    "Task": "messages",
}

__all__ = [
    "PROTOCOL_VERSION",
    "AssistedFuture",
    "AuthenticationError",
    "Failure",
    "Hello",
    "Hub",
    "HubHandler",
    "Init",
    "ProtocolError",
    "Result",
    "Shutdown",
    "Task",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("xl-comm")
    if name in _LAZY:
        return getattr(importlib.import_module(f"xl_comm.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'xl_comm' has no attribute {name!r}")

"""xl-comm: the authenticated executor-worker protocol on zmq, and the worker loop.

Executor side: :class:`Hub`. Worker side: ``python -m xl_comm.worker``. Messages: :mod:`xl_comm.messages`.
"""

from importlib.metadata import version as _version

from xl_comm.framing import PROTOCOL_VERSION, AuthenticationError, ProtocolError
from xl_comm.hub import Hub, HubHandler
from xl_comm.messages import Failure, Hello, Init, Result, Shutdown, Task

__version__ = _version("xl-comm")

__all__ = [
    "PROTOCOL_VERSION",
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

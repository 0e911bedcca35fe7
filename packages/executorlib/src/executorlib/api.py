"""The names other libraries may build on (semver-stable): executorlib 1.x's ``executorlib.api``, plus ours."""

from __future__ import annotations

from executorlib.compat.helpers import cancel_items_in_queue, cloudpickle_register, get_command_path
from executorlib.compat.interface import SocketInterface, interface_bootup
from executorlib.compat.spawners import MpiExecSpawner, SubprocessSpawner
from executorlib.compat.wire import interface_connect, interface_receive, interface_send, interface_shutdown
from executorlib.errors import AuthenticationError, ExecutorlibSocketError, ResourceDictError
from executorlib.executors.cluster import TestClusterExecutor
from executorlib.resources import Resources

__all__ = [
    "AuthenticationError",
    "ExecutorlibSocketError",
    "MpiExecSpawner",
    "ResourceDictError",
    "Resources",
    "SocketInterface",
    "SubprocessSpawner",
    "TestClusterExecutor",
    "cancel_items_in_queue",
    "cloudpickle_register",
    "get_command_path",
    "interface_bootup",
    "interface_connect",
    "interface_receive",
    "interface_send",
    "interface_shutdown",
]

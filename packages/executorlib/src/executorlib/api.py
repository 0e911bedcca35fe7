"""The names other libraries may build on (semver-stable)."""

from __future__ import annotations

from xl_serial import register_by_value
from xl_spawn import SubprocessSpawner

from executorlib.errors import ExecutorlibSocketError, ResourceDictError
from executorlib.executors.cluster import TestClusterExecutor
from executorlib.resources import Resources


def cloudpickle_register(ind: int = 0) -> None:
    """Pickle by value the functions of the module ``ind`` frames above the caller (executorlib 1.x helper)."""
    import sys

    module_name = sys._getframe(ind + 1).f_globals.get("__name__")
    if isinstance(module_name, str) and module_name in sys.modules:
        register_by_value(module_name)


__all__ = [
    "ExecutorlibSocketError",
    "ResourceDictError",
    "Resources",
    "SubprocessSpawner",
    "TestClusterExecutor",
    "cloudpickle_register",
]

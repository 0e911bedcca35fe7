"""xl-spawn: turn a request for a worker into a running process, and stop it cleanly.

Pure builders (argv, environment, exit-status text) and spawners that start one process in its own process
group with a sentinel fd to wait on. Imports no other project package.
"""

import logging

from xl_spawn.argv import python_module_argv
from xl_spawn.env import prepend_path, thread_env
from xl_spawn.exitcodes import describe_returncode
from xl_spawn.process import Spawner, SubprocessSpawner

# Logging is the caller's choice: no output unless the application configures a handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Spawner",
    "SubprocessSpawner",
    "describe_returncode",
    "prepend_path",
    "python_module_argv",
    "thread_env",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("xl-spawn")
    raise AttributeError(f"module 'xl_spawn' has no attribute {name!r}")

"""xl-spawn: turn a request for a worker into a running process, and stop it cleanly.

Pure builders (argv, environment, exit-status text) and spawners that start one process in its own process
group with a sentinel fd to wait on. Imports no other project package.
"""

import logging
from importlib.metadata import version as _version

from xl_spawn.argv import python_module_argv
from xl_spawn.env import prepend_path, thread_env
from xl_spawn.exitcodes import describe_returncode
from xl_spawn.process import Spawner, SubprocessSpawner

__version__ = _version("xl-spawn")

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

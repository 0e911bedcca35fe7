"""The worker scripts of executorlib 1.x's API, found with ``executorlib.api.get_command_path(name)``."""

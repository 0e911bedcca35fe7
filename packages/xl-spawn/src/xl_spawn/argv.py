"""Command lines for worker processes (pure)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["python_module_argv"]


def python_module_argv(module: str, args: Sequence[str] = (), *, python: str | None = None) -> list[str]:
    """The argv that runs ``module`` as ``python -m module *args``.

    ``python`` defaults to the running interpreter, so a worker sees the same environment as its executor.

    >>> python_module_argv("xl_comm.worker", ["--port", "5555"], python="python3")
    ['python3', '-m', 'xl_comm.worker', '--port', '5555']
    """
    if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"module must be a dotted Python identifier such as 'xl_comm.worker', got {module!r}")
    if isinstance(args, str):
        # A lone string would silently become one argument per character.
        raise TypeError(f"args must be a sequence of strings, not a string: {args!r}; wrap it in a list")
    bad = [arg for arg in args if not isinstance(arg, str)]
    if bad:
        raise TypeError(f"every argument must be a str, got {bad[0]!r}; convert it with str() first")
    interpreter = sys.executable if python is None else python
    if not interpreter:
        raise ValueError("no Python interpreter to run: sys.executable is empty; pass python='/path/to/python'")
    return [interpreter, "-m", module, *args]

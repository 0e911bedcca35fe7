"""Environment variables for worker processes (pure)."""

from __future__ import annotations

import os

__all__ = ["THREAD_VARIABLES", "prepend_path", "thread_env"]

# The knobs of the common threaded numeric libraries (OpenMP, OpenBLAS, MKL, Accelerate, numexpr).
THREAD_VARIABLES: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def thread_env(threads: int) -> dict[str, str]:
    """Variables that cap every common numeric library at ``threads`` threads.

    >>> thread_env(2)["OMP_NUM_THREADS"]
    '2'
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads!r}")
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def prepend_path(env_value: str | None, *entries: str) -> str:
    """A PATH-like value with ``entries`` first, then the old ``env_value``; no duplicates, no empty parts.

    An entry that itself contains ``os.pathsep`` counts as several entries, so another PATH can be prepended.

    >>> prepend_path("/usr/bin:/bin", "/opt/x/bin", "/bin")
    '/opt/x/bin:/bin:/usr/bin'
    """
    parts: list[str] = []
    for entry in entries:
        parts.extend(entry.split(os.pathsep))
    if env_value:
        parts.extend(env_value.split(os.pathsep))
    # An empty part means "the current directory" to most loaders: never add one by accident.
    return os.pathsep.join(dict.fromkeys(part for part in parts if part))

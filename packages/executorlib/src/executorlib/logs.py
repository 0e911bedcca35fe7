"""Switching on executorlib's log: ``EXECUTORLIB_LOG=debug`` in the environment, or ``log_to_stderr("debug")``.

Every package of the project logs to a logger named after it (``executorlib``, ``xl_comm``, ``xl_spawn``, ...), and
none of them prints anything unless asked: a library leaves the logging set-up to the application. This module is
the one switch for users who have no logging set-up of their own (a script, a notebook).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["ENV_VAR", "LOGGERS", "log_to_stderr", "parse_level"]

#: The environment variable read at ``import executorlib``: a level name, e.g. ``EXECUTORLIB_LOG=debug``.
ENV_VAR = "EXECUTORLIB_LOG"

#: The loggers the switch turns on: the meta-package and each xl-* package.
LOGGERS = ("executorlib", "xl_serial", "xl_comm", "xl_spawn", "xl_cache", "xl_graph")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_OFF = "off"

_FORMAT = "%(asctime)s %(name)s %(levelname)s [%(threadName)s] %(message)s"

# The handler this module added, so that a second call replaces it instead of printing every line twice.
_installed: logging.Handler | None = None


def parse_level(level: int | str) -> int | None:
    """The logging level named by ``level`` (``"debug"``, ``"INFO"``, ``logging.DEBUG``, ...); None for ``"off"``.

    >>> parse_level("debug") == logging.DEBUG
    True
    >>> parse_level("off") is None
    True
    """
    if isinstance(level, bool) or not isinstance(level, (int, str)):
        raise TypeError(f"level must be a level name or a logging level number, got {level!r}")
    if isinstance(level, int):
        if level < 0:
            raise ValueError(f"level must be a logging level >= 0 (logging.DEBUG is 10), got {level!r}")
        return level
    name = level.strip().lower()
    if name == _OFF:
        return None
    if name not in _LEVELS:
        choices = ", ".join([*_LEVELS, _OFF])
        raise ValueError(f"unknown log level {level!r}: use one of {choices} (case does not matter)")
    return _LEVELS[name]


def log_to_stderr(level: int | str = "info") -> logging.Handler | None:
    """Print what executorlib does at ``level`` and above on stderr: its own logger and every ``xl_*`` package's.

    ``level`` is ``"debug"``, ``"info"``, ``"warning"``, ``"error"`` (any case) or a ``logging`` level number;
    ``"off"`` removes the handler again. Calling it twice replaces the first handler. Returns the handler (None
    for ``"off"``). The records still propagate to the root logger: an application that configured logging itself
    needs no call here.
    """
    global _installed
    number = parse_level(level)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _installed is not None:
            logger.removeHandler(_installed)
        logger.setLevel(logging.NOTSET if number is None else number)
    _installed = None
    if number is None:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    _installed = handler
    return handler


def configure_from_environment() -> None:
    """At ``import executorlib``: apply ``EXECUTORLIB_LOG`` if set. A bad value warns (an import should not
    fail over a typo in a variable) and logging stays off."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return
    try:
        log_to_stderr(value)
    except ValueError as problem:
        warnings.warn(f"{ENV_VAR}={value!r} is ignored: {problem}", RuntimeWarning, stacklevel=3)

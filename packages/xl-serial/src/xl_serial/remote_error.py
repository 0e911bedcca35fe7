"""An exception raised in a worker, shipped back so the caller sees the original type and the remote frames."""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle


class RemoteTraceback(Exception):
    """Carries the formatted remote traceback; set as ``__cause__`` of the re-raised exception."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class RemoteException(Exception):
    """Stands in for a remote exception whose own type could not be pickled (or unpickled)."""


@dataclass(frozen=True, slots=True)
class RemoteError:
    """A picklable record of a remote exception: the exception (when picklable) and its formatted traceback."""

    exception: BaseException
    traceback: str
    origin: str

    def rebuild(self) -> BaseException:
        """The original exception, with the remote traceback attached as ``__cause__``."""
        exc = self.exception
        exc.__cause__ = RemoteTraceback(f"\nTraceback from {self.origin}:\n{self.traceback}")
        return exc


def capture(exc: BaseException, *, origin: str | None = None) -> RemoteError:
    """Record ``exc`` for shipping. An exception that cannot be pickled is replaced by a RemoteException."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    where = origin or f"pid {os.getpid()} on {os.uname().nodename}"
    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
        shipped: BaseException = exc.with_traceback(None)
    except Exception as problem:
        shipped = RemoteException(
            f"{type(exc).__module__}.{type(exc).__qualname__}: {exc} "
            f"(the original exception could not be pickled: {problem!r})"
        )
    return RemoteError(exception=shipped, traceback=text, origin=where)


def error_report(fn: Any, args: Any, kwargs: Mapping[str, Any] | None, error: BaseException) -> str:
    """The entry a worker appends to a task's ``error_log_file``: the call, then the traceback, then a blank line
    (so entries of several tasks stay apart)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    call = dict(kwargs) if isinstance(kwargs, Mapping) else kwargs
    return f"function: {fn!r}\nargs: {args!r}\nkwargs: {call!r}\n{text}\n"

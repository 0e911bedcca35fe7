"""The exception types users of executorlib meet."""

from __future__ import annotations


class ResourceDictError(ValueError, TypeError):
    """A ``resource_dict`` key or value this executor cannot accept.

    A subclass of both ValueError and TypeError, so code written for either (or for pydantic's ValidationError,
    a ValueError, which executorlib 1.x raised) keeps catching it.
    """


class ExecutorlibSocketError(RuntimeError):
    """A worker process died (or could not start) while it held a task, or no worker is left to run one."""

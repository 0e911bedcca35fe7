"""The exception types users of executorlib meet."""

from __future__ import annotations


class ResourceDictError(ValueError, TypeError):
    """A ``resource_dict`` key or value this executor cannot accept.

    A subclass of both ValueError and TypeError, so code written for either (or for pydantic's ValidationError,
    a ValueError, which executorlib 1.x raised) keeps catching it. An unknown key is the exception: where pydantic
    is installed it raises ``pydantic.ValidationError`` instead, as 1.x did (see :func:`unknown_key_error`);
    ``except ValueError`` catches both.
    """


def unknown_key_error(error: ResourceDictError, key: object, value: object) -> Exception:
    """What an unknown ``resource_dict`` key raises: with pydantic importable a ``pydantic.ValidationError``, as
    executorlib 1.x raised (code catching it keeps working), whose text is ``error``'s message; else ``error``.

    pydantic's error class cannot be subclassed, so the error cannot be both; pydantic is imported only here, when
    raising, so it costs nothing on the way of a valid call."""
    try:
        from pydantic import ValidationError
        from pydantic_core import PydanticCustomError
    except ImportError:
        return error
    where = key if isinstance(key, str | int) else repr(key)  # pydantic's locations are str or int
    # 1.x's error type for a key the model does not declare, with our message (no context: braces stay as they are)
    line = {"type": PydanticCustomError("extra_forbidden", str(error)), "loc": (where,), "input": value}
    return ValidationError.from_exception_data("resource_dict", [line])  # type: ignore[list-item]


class ResourceKeyWarning(UserWarning):
    """File mode: a ``resource_dict`` key that is neither an executorlib resource nor a variable of the job script
    template in use, most likely a misspelling. It is still handed to the template, as executorlib 1.x does (which
    warns with a plain UserWarning; this is a subclass, so filters for UserWarning keep working)."""


class CacheWarning(UserWarning):
    """Results cannot be written to a cache directory (read-only, or a parent is a file): they are returned but not
    cached. Issued once per directory."""


class MissingExtraError(ImportError):
    """A feature needs a package that one of executorlib's extras installs; the message names the extra
    (``pip install "executorlib[cluster]"``)."""


def missing_extra(feature: str, package: str, extra: str) -> MissingExtraError:
    """The error for ``feature`` when ``package`` cannot be imported: what is missing and which extra brings it."""
    return MissingExtraError(f'{feature} needs {package}, which is not installed: pip install "executorlib[{extra}]"')


class MissingMpiError(ResourceDictError, MissingExtraError):
    """A task asks for ``cores`` > 1 where mpi4py is missing: a ResourceDictError (as every rejected request) and
    an ImportError (as every missing extra, here ``executorlib[mpi]``)."""


class ExecutorlibSocketError(RuntimeError):
    """A worker process died (or could not start) while it held a task, or no worker is left to run one."""


class JobFailedError(RuntimeError):
    """A job ended without writing its task's output (time limit, out of memory, node failure, cancelled, killed).

    ``state`` is the scheduler's word for the end (``TIMEOUT``, ``CANCELLED``, ``exit status -9``, ...),
    ``queue_id`` the job id, ``log_file`` the job's output file; the message quotes the log's last lines."""

    def __init__(self, message: str, *, state: str, queue_id: int | None, log_file: str | None) -> None:
        super().__init__(message)
        self.state = state
        self.queue_id = queue_id
        self.log_file = log_file


class AuthenticationError(ExecutorlibSocketError):
    """A message of ``executorlib.api``'s socket interface that was not sealed with this process tree's key
    (``EXECUTORLIB_API_KEY``) or that repeats an earlier one. It was refused before anything was unpickled."""

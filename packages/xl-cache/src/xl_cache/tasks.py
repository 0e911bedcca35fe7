"""One task in the cache: write its input or its result, find its result by key (O(1): one file open)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

import xl_serial

from xl_cache.errors import CacheCorruptError
from xl_cache.h5image import Reader
from xl_cache.layout import INPUTS, Meta, input_name, output_name
from xl_cache.legacy import LEGACY_FORMAT
from xl_cache.store import (
    check_versions,
    error_summary,
    open_file,
    pack,
    private_dir,
    read_meta,
    read_pickled,
    unpack,
    unpack_from,
    write_file,
)


def input_path(cache_directory: str | os.PathLike[str], key: str) -> str:
    return os.path.join(os.path.abspath(cache_directory), input_name(key))


def output_path(cache_directory: str | os.PathLike[str], key: str) -> str:
    return os.path.join(os.path.abspath(cache_directory), output_name(key))


def _inputs(fn: Any, args: Sequence[Any], kwargs: Mapping[str, Any] | None, resource_dict: Any) -> dict[str, bytes]:
    values = (fn, tuple(args), dict(kwargs or {}), dict(resource_dict or {}))
    return {name: pack(value) for name, value in zip(INPUTS, values, strict=True)}


def write_input(
    cache_directory: str | os.PathLike[str],
    key: str,
    fn: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    resource_dict: Mapping[str, Any] | None = None,
    error_log_file: str | None = None,
    queue_id: int | None = None,
) -> str:
    """Write ``<key>_i.h5`` (a pending task) and return its path; the directory is created private."""
    path = input_path(cache_directory, key)
    private_dir(os.path.dirname(path))  # the cache directory, and the sub-folders of a key with '/'
    write_file(
        path,
        key=key,
        function=xl_serial.function_name(fn),
        status="pending",
        pickled=_inputs(fn, args, kwargs, resource_dict),
        queue_id=queue_id,
        error_log_file=error_log_file,
    )
    return path


def write_output(
    cache_directory: str | os.PathLike[str],
    key: str,
    fn: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    output: Any = None,
    error: BaseException | None = None,
    runtime: float = 0.0,
    resource_dict: Mapping[str, Any] | None = None,
    error_log_file: str | None = None,
    queue_id: int | None = None,
) -> str:
    """Write ``<key>_o.h5``: the inputs and ``output``, or ``error`` when it is given; return its path.

    An error is stored with its formatted traceback (:func:`xl_serial.capture`), so a reader re-raises it with
    the original type and the remote traceback attached. An output that cannot be pickled raises here.
    """
    path = output_path(cache_directory, key)
    private_dir(os.path.dirname(path))
    return write_result_file(
        path,
        key=key,
        function=xl_serial.function_name(fn),
        inputs=_inputs(fn, args, kwargs, resource_dict),
        output=output,
        error=error,
        runtime=runtime,
        error_log_file=error_log_file,
        queue_id=queue_id,
    )


def write_result_file(
    path: str,
    *,
    key: str,
    function: str,
    inputs: Mapping[str, bytes],
    output: Any = None,
    error: BaseException | None = None,
    runtime: float = 0.0,
    error_log_file: str | None = None,
    queue_id: int | None = None,
) -> str:
    """:func:`write_output` with the inputs already pickled (the file-mode worker copies them from ``_i.h5``)."""
    if error is None:
        result = {"output": pack(output)}
    else:
        # the bare exception, as executorlib 1.x stores it (and reads it); its traceback beside it
        captured = xl_serial.capture(error)
        result = {"error": pack(captured.exception), "error_traceback": pack((captured.traceback, captured.origin))}
    write_file(
        path,
        key=key,
        function=function,
        status="done" if error is None else "error",
        pickled={**inputs, **result},
        runtime=runtime,
        queue_id=queue_id,
        error_log_file=error_log_file,
        error=None if error is None else error_summary(error),
    )
    return path


def read_error(reader: Reader, meta: Meta) -> BaseException:
    """The exception stored in the open file ``reader``, with its remote traceback attached when it has one."""
    stored = unpack_from(meta, reader.path, read_pickled(reader, meta, "error"))
    if isinstance(stored, BaseException) and "error_traceback" in meta.checksums:
        text, origin = unpack(read_pickled(reader, meta, "error_traceback"))
        stored = xl_serial.RemoteError(exception=stored, traceback=text, origin=origin)
    return as_exception(stored)


def as_exception(stored: Any) -> BaseException:
    """The exception a reader raises for a stored error (a captured RemoteError is rebuilt with its traceback)."""
    if isinstance(stored, xl_serial.RemoteError):
        return stored.rebuild()
    if isinstance(stored, BaseException):
        return stored
    return RuntimeError(f"the task failed with {stored!r}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished task read from the cache: its output, or the exception it raised."""

    key: str
    status: Literal["done", "error"]
    value: Any
    """The output when ``status == "done"``, else the exception."""
    runtime: float | None

    def result(self) -> Any:
        """The output, or raise the stored exception (like ``Future.result()``)."""
        if self.status == "error":
            raise self.value
        return self.value

    def to_future(self) -> Future[Any]:
        """A finished Future: with the output, or failed with the stored exception."""
        future: Future[Any] = Future()
        if self.status == "error":
            future.set_exception(self.value)
        else:
            future.set_result(self.value)
        return future


def load_result(cache_directory: str | os.PathLike[str], key: str) -> Outcome | None:
    """The finished task ``key``, or ``None`` when it has no output file (never run, pending or running).

    Costs one file open whatever the size of the cache. A damaged file raises
    :class:`~xl_cache.CacheCorruptError`, one from other versions :class:`~xl_cache.CacheVersionError`.
    """
    path = output_path(cache_directory, key)
    try:
        reader = open_file(path)
    except FileNotFoundError:
        return None
    with reader:
        meta = read_meta(reader, key=key)
        if meta.stamp.format == LEGACY_FORMAT and meta.status == "pending":
            raise CacheCorruptError(
                f"cache file {path} (written by executorlib 1.x) holds neither an output nor an error: its writer "
                "stopped before it finished; delete it, and the task runs again"
            )
        if meta.key != key or meta.status == "pending":
            raise CacheCorruptError(
                f"cache file {path} holds the {meta.status} task {meta.key!r}, not the result of {key!r}; it was "
                "renamed or damaged; delete it"
            )
        check_versions(meta, path)
        if meta.status == "error":
            return Outcome(key, "error", read_error(reader, meta), meta.runtime)
        value = unpack_from(meta, path, read_pickled(reader, meta, "output"))
    return Outcome(key, "done", value, meta.runtime)


def get_future_from_cache(cache_directory: str | os.PathLike[str], cache_key: str) -> Future[Any]:
    """The cached task ``cache_key`` as executorlib 1.x returns it.

    - ``<key>_o.h5`` holds a result: a finished Future with it.
    - It holds an error: **raises** the stored exception (1.x callers write ``except ValueError:``);
      ``load_result(...).to_future()`` gives a failed Future instead.
    - Only ``<key>_i.h5`` exists (queued or running): a Future that is not done. Nothing completes it: ask again
      once the output exists, or resubmit the call to an executor on this cache directory, which re-attaches to
      the running job.
    - Neither file: ``FileNotFoundError``.
    """
    outcome = load_result(cache_directory, cache_key)
    if outcome is not None:
        if outcome.status == "error":
            raise outcome.value
        return outcome.to_future()
    pending = input_path(cache_directory, cache_key)
    if os.path.exists(pending):
        return Future()
    raise FileNotFoundError(2, f"no cache entry {cache_key!r} in {os.path.abspath(cache_directory)}", pending)


def remove(cache_directory: str | os.PathLike[str], key: str) -> list[str]:
    """Delete the input and output files of ``key``; return the paths that were there."""
    removed = []
    for path in (output_path(cache_directory, key), input_path(cache_directory, key)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def record_queue_id(cache_directory: str | os.PathLike[str], key: str, queue_id: int) -> None:
    """Rewrite the pending input of ``key`` with the batch job id that will run it (atomically, like any write)."""
    path = input_path(cache_directory, key)
    with open_file(path) as reader:
        meta = read_meta(reader)
        inputs = {name: read_pickled(reader, meta, name) for name in INPUTS}
    write_file(
        path,
        key=meta.key,
        function=meta.function,
        status="pending",
        pickled=inputs,
        queue_id=queue_id,
        error_log_file=meta.error_log_file,
        created=meta.created,
    )

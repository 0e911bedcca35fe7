"""Listing a cache directory: entries read from their metadata stamp only, pickles loaded on demand."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from xl_cache.errors import CacheError, CachePendingError
from xl_cache.layout import Meta, Status, is_temp_name, output_name, parse_name
from xl_cache.store import check_versions, open_file, read_meta, read_pickled, unpack_from
from xl_cache.tasks import read_error

#: Upstream's names of the per-entry fields, in the order ``get_cache_data`` lists them.
_UPSTREAM_ORDER = ("function", "input_args", "input_kwargs", "resource_dict")


class CacheWarning(UserWarning):
    """A file in a cache directory was skipped while listing (damaged, or from other versions)."""


@dataclass(frozen=True)
class CacheEntry:
    """One task in a cache directory, as its file's stamp describes it.

    Reading an entry costs one small attribute; ``output``, ``error``, ``function`` and the inputs are unpickled
    on first access (and kept).
    """

    path: str
    meta: Meta
    size: int
    mtime: float

    @property
    def key(self) -> str:
        return self.meta.key

    @property
    def status(self) -> Status:
        return self.meta.status

    @property
    def function_name(self) -> str:
        return self.meta.function

    @property
    def runtime(self) -> float | None:
        return self.meta.runtime

    @property
    def queue_id(self) -> int | None:
        return self.meta.queue_id

    @property
    def error_log_file(self) -> str | None:
        return self.meta.error_log_file

    @property
    def error_summary(self) -> str | None:
        return self.meta.error

    def load(self, name: str) -> Any:
        """Unpickle dataset ``name`` (``function``, ``input_args``, ..., ``output`` or ``error``)."""
        with open_file(self.path) as reader:
            check_versions(self.meta, self.path)
            data = read_pickled(reader, self.meta, name)
        return unpack_from(self.meta, self.path, data)

    @cached_property
    def function(self) -> Any:
        return self.load("function")

    @cached_property
    def input_args(self) -> tuple[Any, ...]:
        return tuple(self.load("input_args"))

    @cached_property
    def input_kwargs(self) -> dict[str, Any]:
        return dict(self.load("input_kwargs"))

    @cached_property
    def resource_dict(self) -> dict[str, Any]:
        return dict(self.load("resource_dict"))

    @cached_property
    def error(self) -> BaseException | None:
        """The exception of a failed task, ``None`` otherwise."""
        if self.status != "error":
            return None
        with open_file(self.path) as reader:
            check_versions(self.meta, self.path)
            return read_error(reader, self.meta)

    @cached_property
    def output(self) -> Any:
        """The result of a finished task; a failed one raises its exception, a pending one CachePendingError."""
        if self.status == "pending":
            raise CachePendingError(f"task {self.key!r} has no output yet ({self.path} is its pending input)")
        if self.status == "error":
            raise self.error  # type: ignore[misc]
        return self.load("output")

    def to_future(self) -> Future[Any]:
        """A finished Future (result or exception); a pending entry raises CachePendingError."""
        if self.status == "pending":
            raise CachePendingError(f"task {self.key!r} has no output yet ({self.path} is its pending input)")
        future: Future[Any] = Future()
        if self.status == "error":
            future.set_exception(self.error)
        else:
            future.set_result(self.output)
        return future

    def to_dict(self) -> dict[str, Any]:
        """The record ``get_cache_data`` returns: upstream's keys for the datasets present, unpickled, plus
        ``filename``, and ``cache_key`` and ``status`` (additions)."""
        record: dict[str, Any] = {name: getattr(self, name) for name in _UPSTREAM_ORDER}
        if self.status == "done":
            record["output"] = self.output
        elif self.status == "error":
            record["error"] = self.error
        if self.runtime is not None:
            record["runtime"] = self.runtime
        if self.queue_id is not None:
            record["queue_id"] = self.queue_id
        if self.error_log_file is not None:
            record["error_log_file"] = self.error_log_file
        record["filename"] = self.path
        record["cache_key"] = self.key
        record["status"] = self.status
        return record


@dataclass(frozen=True)
class DamagedFile:
    """A file with a cache name that could not be read as an entry."""

    path: str
    problem: CacheError | OSError


def read_entry(path: str | os.PathLike[str], *, key: str | None = None) -> CacheEntry:
    """The entry of one cache file; :class:`~xl_cache.CacheCorruptError` if it is damaged. ``key`` names a file
    without a stamp (executorlib 1.x's), whose key is otherwise taken from its name."""
    path = os.path.abspath(path)
    with open_file(path) as reader:
        meta = read_meta(reader, key=key)
    stat = os.stat(path)
    return CacheEntry(path, meta, stat.st_size, stat.st_mtime)


def walk(
    cache_directory: str | os.PathLike[str], *, recursive: bool = True
) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
    """``(directory, its files sorted by name)`` for ``cache_directory`` and, if ``recursive``, every directory
    below it (symbolic links are not followed). One directory is listed at a time."""
    pending = [os.path.abspath(cache_directory)]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                items = sorted(listing, key=lambda item: item.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        files = []
        for item in items:
            if item.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append(item.path)
            else:
                files.append(item)
        yield directory, files


def scan(cache_directory: str | os.PathLike[str], *, recursive: bool = True) -> Iterator[CacheEntry | DamagedFile]:
    """Every cache file below ``cache_directory``, lazily; reads only each file's metadata stamp.

    A key with both files is listed once, by its output. Temporary files of unfinished writes are not entries.
    Sub-directories (job working directories, per-task cache directories) are searched when ``recursive``.
    """
    root = os.path.abspath(cache_directory)
    for directory, files in walk(root, recursive=recursive):
        names = {item.name for item in files}
        folder = os.path.relpath(directory, root)
        for item in files:
            parsed = parse_name(item.name)
            if parsed is None or is_temp_name(item.name):
                continue
            key, kind = parsed
            if kind == "input" and output_name(key) in names:
                continue
            try:  # the key relative to the root, as a key with '/' names it (files without our stamp need it)
                yield read_entry(item.path, key=key if folder == "." else f"{folder}/{key}")
            except (CacheError, OSError) as problem:
                yield DamagedFile(item.path, problem)


def list_entries(cache_directory: str | os.PathLike[str], *, recursive: bool = True) -> Iterator[CacheEntry]:
    """The readable entries of :func:`scan`; each damaged file is reported with a :class:`CacheWarning`."""
    for found in scan(cache_directory, recursive=recursive):
        if isinstance(found, DamagedFile):
            warnings.warn(f"skipped {found.path}: {found.problem}", CacheWarning, stacklevel=2)
            continue
        yield found


def get_cache_data(cache_directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One dict per task in ``cache_directory`` (searched recursively), finished and pending.

    Keys as in executorlib 1.x, for the datasets the file has: ``function``, ``input_args``, ``input_kwargs``,
    ``resource_dict``, ``output`` or ``error``, ``runtime``, ``queue_id``, ``error_log_file`` and ``filename``;
    added: ``cache_key`` and ``status`` (``"pending"``, ``"done"`` or ``"error"``). Everything is unpickled;
    use :func:`list_entries` or :func:`to_dataframe` to list without loading outputs. Damaged files, and files
    from other Python/cloudpickle versions, are left out with a :class:`CacheWarning`.

    >>> import pandas  # doctest: +SKIP
    >>> pandas.DataFrame(get_cache_data("./cache"))  # doctest: +SKIP
    """
    records = []
    for entry in list_entries(cache_directory):
        try:
            records.append(entry.to_dict())
        except CacheError as problem:
            warnings.warn(f"skipped {entry.path}: {problem}", CacheWarning, stacklevel=2)
    return records


def to_dataframe(cache_directory: str | os.PathLike[str], *, outputs: bool = False) -> Any:
    """A ``pandas.DataFrame`` with one row per entry: key, status, function name, runtime, queue id, error,
    error log file, created, size and filename; ``outputs=True`` adds the unpickled ``output`` column."""
    try:
        import pandas
    except ImportError:
        raise ImportError(
            'to_dataframe() needs pandas; install it with pip install "xl-cache[pandas]" (or pip install pandas), '
            "or use get_cache_data() / list_entries(), which need no pandas"
        ) from None
    rows = []
    for entry in list_entries(cache_directory):
        row: dict[str, Any] = {
            "cache_key": entry.key,
            "status": entry.status,
            "function": entry.function_name,
            "runtime": entry.runtime,
            "queue_id": entry.queue_id,
            "error": entry.error_summary,
            "error_log_file": entry.error_log_file,
            "created": pandas.Timestamp(entry.meta.created, unit="s"),
            "size": entry.size,
            "filename": entry.path,
        }
        if outputs:
            row["output"] = entry.output if entry.status == "done" else None
        rows.append(row)
    columns = ["cache_key", "status", "function", "runtime", "queue_id", "error", "error_log_file", "created"]
    columns += ["size", "filename", *(["output"] if outputs else [])]
    return pandas.DataFrame(rows, columns=columns)

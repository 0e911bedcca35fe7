"""Files: private directories, atomic writes, and validated reads of one cache file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import socket
import stat
import sys
import threading
import time
import zlib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import version
from typing import Any

import xl_serial

from xl_cache.errors import CacheCorruptError, CacheTrustError, CacheVersionError
from xl_cache.h5image import H5Reader, IndexedReader, Reader, Value, build_file
from xl_cache.layout import (
    FORMAT_VERSION,
    Meta,
    Stamp,
    Status,
    decode_meta,
    encode_meta,
    incompatibility,
    temp_name,
    trust_problem,
)
from xl_cache.legacy import LEGACY_FORMAT, legacy_meta
from xl_cache.portable import forced

PRIVATE_MODE = 0o700
#: Numbered temporaries tried per write before falling back to a unique name (more live writers of one key than
#: this).
MAX_TEMPORARIES = 64

# Temporaries this process is writing: POSIX-emulated flock (NFS) does not exclude two threads of one process.
_claimed: set[str] = set()
_claimed_lock = threading.Lock()


@cache
def current_stamp() -> Stamp:
    """The versions this process writes, and can read."""
    return Stamp(FORMAT_VERSION, ".".join(map(str, sys.version_info[:3])), version("cloudpickle"))


def private_dir(path: str | os.PathLike[str]) -> str:
    """Create ``path`` (and any missing parent) readable by this user only; return it absolute.

    Existing directories keep their mode: they are the user's choice. Pickles run code when loaded, so a cache
    directory others can write to would let them run code as this user.
    """
    path = os.path.abspath(os.fspath(path))
    missing = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
    return path


def atomic_write(path: str, data: bytes | tuple[bytes, ...]) -> None:
    """Write ``path`` (``data``, or its parts one after the other) so that it is either absent, the old file, or
    the complete new one.

    The bytes go to a private temporary file in the same directory (:func:`claim_temporary`), are fsynced, and
    the file is renamed over ``path``; a crash at any point leaves at most a ``*.tmp-*`` file, which no reader
    takes for a result and which the next writer of ``path`` on this host removes (or ``gc``). Concurrent
    writers of one path each rename a complete file; the last rename wins.
    """
    directory, name = os.path.split(path)
    directory = directory or "."
    fd, temporary, number = claim_temporary(directory, name)
    try:
        try:
            for part in (data,) if isinstance(data, bytes) else data:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    finally:
        os.close(fd)  # releases the temporary's lock, after the rename
        with _claimed_lock:
            _claimed.discard(temporary)
    _fsync_directory(directory)
    if number is not None:
        remove_stale_temporaries(directory, name, first_number=number + 1)


@cache
def host_tag() -> str:
    """This host's name as it can appear in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "host"


def claim_temporary(directory: str, name: str) -> tuple[int, str, int | None]:
    """``(fd, path, number)`` of an empty temporary file for ``name``, open, and locked (``flock``) until closed.

    The numbered temporaries ``<name>.tmp-<host>-0``, ``-1``, ... are tried in turn: one whose lock a live
    writer holds is skipped; one left by a writer that died (its lock went with it) is taken over, which removes
    that leftover. Where the file system has no locks, a unique name is used (``number`` is ``None``) and
    leftovers wait for ``gc``.
    """
    for number in range(MAX_TEMPORARIES):
        temporary = os.path.join(directory, temp_name(name, host_tag(), str(number)))
        with _claimed_lock:
            if temporary in _claimed:
                continue
            _claimed.add(temporary)
        try:
            fd = _lock_temporary(temporary, create=True)
        except _NoLocks:
            with _claimed_lock:
                _claimed.discard(temporary)
            break
        if fd is not None:
            os.ftruncate(fd, 0)
            return fd, temporary, number
        with _claimed_lock:
            _claimed.discard(temporary)
    temporary = os.path.join(directory, temp_name(name, host_tag(), f"{os.getpid()}.{secrets.token_hex(4)}"))
    return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), temporary, None


def remove_stale_temporaries(directory: str, name: str, *, first_number: int = 0) -> list[str]:
    """Delete the numbered temporaries of ``name`` on this host whose writers are gone, from ``first_number`` up
    to the first number without a file; return their paths. Live writers' files are kept."""
    removed = []
    for number in range(first_number, MAX_TEMPORARIES):
        temporary = os.path.join(directory, temp_name(name, host_tag(), str(number)))
        with _claimed_lock:
            if temporary in _claimed:
                continue
        try:
            fd = _lock_temporary(temporary, create=False)
        except FileNotFoundError:
            break
        except _NoLocks:
            break
        if fd is None:
            continue
        try:
            os.unlink(temporary)  # safe while locked: no writer renames another's temporary onto this name
            removed.append(temporary)
        finally:
            os.close(fd)
    return removed


class _NoLocks(Exception):
    """The file system does not support ``flock``."""


def _lock_temporary(temporary: str, *, create: bool) -> int | None:
    """An open descriptor of ``temporary`` locked by us, or ``None`` when a live writer holds it (or it is not
    our own regular file); ``FileNotFoundError`` without ``create`` when it does not exist."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
    while True:
        try:
            fd = os.open(temporary, flags, 0o600)
        except FileNotFoundError:
            raise
        except OSError as problem:  # a symbolic link (ELOOP) or another user's file: never touched
            if problem.errno in (errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENXIO, errno.EISDIR):
                return None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer
            os.close(fd)
            return None
        except OSError as problem:
            os.close(fd)
            if problem.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise _NoLocks from None
            raise
        locked = os.fstat(fd)
        try:
            now: os.stat_result | None = os.lstat(temporary)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (locked.st_dev, locked.st_ino):
            os.close(fd)  # its writer renamed it into place and let go meanwhile: look at this number again
            if not create:
                raise FileNotFoundError(errno.ENOENT, "no temporary of this number", temporary)
            continue
        if not stat.S_ISREG(locked.st_mode) or locked.st_uid != os.geteuid() or locked.st_nlink != 1:
            os.close(fd)
            return None
        return fd


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; some file systems refuse to open or sync a directory, which is harmless.
    try:
        fd = os.open(directory or ".", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pack(obj: Any) -> bytes:
    """cloudpickle bytes of ``obj``, buffers in-band: one dataset per object."""
    return bytes(xl_serial.dumps(obj, min_out_of_band=sys.maxsize)[0])


def unpack(data: bytes) -> Any:
    return xl_serial.loads([data])


def error_summary(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def write_file(
    path: str,
    *,
    key: str,
    function: str,
    status: Status,
    pickled: Mapping[str, bytes],
    runtime: float | None = None,
    queue_id: int | None = None,
    error_log_file: str | None = None,
    error: str | None = None,
    created: float | None = None,
) -> None:
    """Write one cache file atomically: the pickled datasets, the small value datasets, and the stamp."""
    meta = Meta(
        stamp=current_stamp(),
        key=key,
        function=function,
        created=time.time() if created is None else created,
        status=status,
        runtime=runtime,
        queue_id=queue_id,
        error_log_file=error_log_file,
        error=error,
        checksums={name: zlib.crc32(data) for name, data in pickled.items()},
    )
    # The stamp holds the small values for listings; the datasets repeat them pickled, as executorlib 1.x reads
    # them (it unpickles every dataset it knows).
    datasets: dict[str, Value] = dict(pickled)
    for name, value in (("runtime", runtime), ("queue_id", queue_id), ("error_log_file", error_log_file)):
        if value is not None:
            datasets[name] = pack(value)
    atomic_write(path, build_file(encode_meta(meta), datasets))


def open_file(path: str) -> Reader:
    """Open a cache file; ``FileNotFoundError`` if it is absent, :class:`CacheTrustError` if someone else could
    have written or replaced it (:func:`~xl_cache.layout.trust_problem`), :class:`CacheCorruptError` if it is not
    HDF5.

    The checks are made on open descriptors of the directory and the file, and HDF5 reads that same open file,
    so nothing can be swapped in between.
    """
    directory, name = os.path.split(os.path.abspath(path))
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # O_NONBLOCK: a FIFO planted under a cache name must not block the open
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
            dir_stat = os.fstat(dir_fd)
        finally:
            os.close(dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(2, "No such cache file", path) from None
    try:
        file_stat = os.fstat(fd)
        check_trusted(path, file_stat, dir_stat)
        if not stat.S_ISREG(file_stat.st_mode):
            raise CacheCorruptError(f"cache file {path} is not a regular file; delete it")
        try:
            indexed = IndexedReader.open(path, fd, file_stat.st_size)
            if indexed is not None:
                return indexed
            return _open_pinned(path, fd, file_stat)
        except OSError as problem:
            raise CacheCorruptError(
                f"cache file {path} cannot be read as HDF5 (truncated or damaged): {problem}"
            ) from None
    finally:
        os.close(fd)


def check_trusted(path: str, file_stat: os.stat_result, dir_stat: os.stat_result) -> None:
    """:class:`CacheTrustError` naming the file, its owner, the rule and the fix unless the file is trusted."""
    problem = trust_problem(
        uid=os.geteuid(),
        file_uid=file_stat.st_uid,
        file_mode=file_stat.st_mode,
        dir_uid=dir_stat.st_uid,
        dir_mode=dir_stat.st_mode,
        file=path,
        directory=os.path.dirname(os.path.abspath(path)),
        file_owner=_user_name(file_stat.st_uid),
    )
    if problem is not None:
        raise CacheTrustError(f"refusing to load cache file {path}: {problem}")


def _user_name(uid: int) -> str | None:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None


@cache
def _proc_fd() -> str | None:
    return "/proc/self/fd" if os.path.isdir("/proc/self/fd") else None


def _open_pinned(path: str, fd: int, file_stat: os.stat_result) -> H5Reader:
    """HDF5 opened on the file ``fd`` holds: through ``/proc/self/fd`` on Linux, else by path, then checked to
    be the same file (also with ``XL_PORTABLE=fdpath``, to test that path on Linux)."""
    proc = None if forced("fdpath") else _proc_fd()
    if proc is not None:
        return H5Reader(path, source=f"{proc}/{fd}")
    reader = H5Reader(path)
    now = os.stat(path)
    if (now.st_dev, now.st_ino) != (file_stat.st_dev, file_stat.st_ino):
        reader.close()
        raise CacheTrustError(f"refusing to load cache file {path}: it was replaced while it was being opened")
    return reader


def read_meta(reader: Reader, *, key: str | None = None) -> Meta:
    """The stamp of the file; a file without one, as executorlib 1.x writes them, is read as format 0 with
    ``key`` (default: from its name) as its key."""
    try:
        if not reader.has_meta():
            return legacy_meta(reader, key)
        return decode_meta(reader.meta())
    except Exception as problem:
        raise CacheCorruptError(
            f"cache file {reader.path} has no valid xl-cache stamp ({problem}); it was damaged or not written by "
            "xl-cache or executorlib 1.x; delete it unless you know what wrote it"
        ) from None


def check_versions(meta: Meta, path: str) -> None:
    """:class:`CacheVersionError` naming both versions when this process cannot unpickle the file."""
    problem = incompatibility(meta.stamp, current_stamp())
    if problem is not None:
        raise CacheVersionError(
            f"cache file {path} was written with {problem}; its pickles cannot be read safely. Rerun the task "
            "with this environment (delete the file or use another cache directory), or read it with the versions "
            "that wrote it"
        )


def read_pickled(reader: Reader, meta: Meta, name: str) -> bytes:
    """The bytes of dataset ``name``, checked against the CRC in the stamp."""
    expected = meta.checksums.get(name)
    try:
        data = reader.read_bytes(name)
    except Exception as problem:
        raise CacheCorruptError(f"cache file {reader.path}: dataset {name!r} cannot be read ({problem})") from None
    if meta.stamp.format == LEGACY_FORMAT:
        return data  # executorlib 1.x keeps no checksums
    if expected is None or zlib.crc32(data) != expected:
        raise CacheCorruptError(
            f"cache file {reader.path}: dataset {name!r} does not match its checksum (damaged); delete the file"
        )
    return data


def unpack_from(meta: Meta, path: str, data: bytes) -> Any:
    """:func:`unpack` of a dataset of the file ``path``; a format-0 file's pickle that does not load here (it
    names no versions to check beforehand) raises :class:`CacheVersionError` naming the file."""
    if meta.stamp.format != LEGACY_FORMAT:
        return unpack(data)
    try:
        return unpack(data)
    except Exception as problem:
        raise CacheVersionError(
            f"cache file {path} was written by executorlib 1.x (format 0, no version stamp) and cannot be "
            f"unpickled here: {problem!r}. Read it with the environment that wrote it, or rerun the task"
        ) from problem


def load_object(path: str, name: str) -> Any:
    """Unpickle dataset ``name`` of the file at ``path`` after checking its stamp, versions and checksum."""
    with open_file(path) as reader:
        meta = read_meta(reader)
        check_versions(meta, path)
        data = read_pickled(reader, meta, name)
    return unpack_from(meta, path, data)

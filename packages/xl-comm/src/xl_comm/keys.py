"""How a worker gets the executor's key: through a file that only the user can read, which the worker deletes
once it has read it. Never on a command line, and never in the environment: the kernel keeps a process's
initial environment readable in ``/proc/<pid>/environ`` for its whole life, whatever the process removes from
``os.environ``. The worker's environment names only the file (``XL_COMM_KEY_FILE``)."""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import sys
import threading
import weakref
from collections.abc import Mapping, MutableMapping

from xl_comm.framing import KEY_BYTES

#: The old variable that held the key itself; it is refused, not read (see load_key).
KEY_ENV = "XL_COMM_KEY"
KEY_FILE_ENV = "XL_COMM_KEY_FILE"

_PREFIX = ".xl-comm-keys-"


class KeyFiles:
    """Hands one key to workers: each ``environment()`` writes a new 0600 file into a private (0700) directory
    and names it for one worker's environment. The worker deletes its file on reading it (:func:`load_key`);
    ``close()`` removes the directories with whatever no worker read (a worker that never started), as does
    garbage collection or the interpreter's exit. A worker that finds the directory empty after reading removes
    it too (so a killed executor leaves nothing behind); the next ``environment()`` makes a new one.

    >>> files = KeyFiles(bytes(32))
    >>> env = files.environment()
    >>> load_key(dict(env)) == bytes(32) and not os.path.exists(env[KEY_FILE_ENV])
    True
    >>> files.close()
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a key has {KEY_BYTES} bytes, got {len(key)}")
        self._text = key.hex() + "\n"
        self._lock = threading.Lock()
        self._directories: dict[str | None, str] = {}
        self._numbers = itertools.count(1)
        self._finalizer = weakref.finalize(self, _remove_all, self._directories, os.getpid())

    def environment(self, directory: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """The environment entries of one worker start. Its key file is made under ``directory``, which must be
        readable where the worker (its MPI rank 0) runs, e.g. a shared filesystem for another host; None: this
        host's temporary directory."""
        parent = None if directory is None else os.path.abspath(directory)
        for attempt in range(3):
            with self._lock:
                if not self._finalizer.alive:
                    raise RuntimeError("KeyFiles.environment() after close(); the executor has shut down")
                private = self._directories.get(parent)
                if private is None or not os.path.isdir(private):
                    if parent is not None:
                        os.makedirs(parent, mode=0o700, exist_ok=True)
                    import tempfile  # the executor's side only: a worker imports this module to load its key

                    private = self._directories[parent] = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)  # 0700
                path = os.path.join(private, f"worker-{next(self._numbers)}")
            try:
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                continue  # a worker removed the directory it had found empty (load_key): make a new one
            with os.fdopen(handle, "w", encoding="ascii") as out:
                out.write(self._text)
            return {KEY_FILE_ENV: path}
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Remove the key directories and any file still in them (idempotent)."""
        with self._lock:
            self._finalizer()


def _remove_all(directories: dict[str | None, str], owner: int) -> None:
    if os.getpid() != owner:
        return  # a forked child exiting: the directories are still its parent's
    for private in directories.values():
        import shutil  # the executor's side only, like tempfile

        shutil.rmtree(private, ignore_errors=True)
    directories.clear()


def discard_key_file(environment: Mapping[str, str]) -> None:
    """Delete the key file named in ``environment`` (made by :meth:`KeyFiles.environment`) that no worker will
    read, e.g. because its start failed."""
    path = environment.get(KEY_FILE_ENV)
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def load_key(environ: MutableMapping[str, str] | None = None) -> bytes:
    """Read the key from the 0600 file named by ``XL_COMM_KEY_FILE``, then delete that file.

    The variable is removed from ``environ`` (default ``os.environ``), so the user's function and its child
    processes do not inherit it.
    """
    env = os.environ if environ is None else environ
    path = env.pop(KEY_FILE_ENV, None)
    if path is None:
        refused = (
            f" ({KEY_ENV} is set but not read: a key in the environment stays readable in /proc/<pid>/environ; "
            f"write it to a file with mode 0600 and name that file in {KEY_FILE_ENV})"
            if KEY_ENV in env
            else ""
        )
        raise RuntimeError(
            f"no key: a worker reads the executor's key from the file named by {KEY_FILE_ENV}; workers are "
            f"started by an executor, which writes that file{refused}"
        )
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"key file {path} (from {KEY_FILE_ENV}) does not exist: a key file is read once and then deleted, "
            "so each worker start needs a new one (the executor writes it); if the worker runs on another host, "
            "the file must be on a filesystem that host shares"
        ) from None
    with os.fdopen(handle, encoding="ascii") as source:
        info = os.fstat(source.fileno())
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise PermissionError(
                f"key file {path} must be owned by this user and not readable by others (chmod 600 {path})"
            )
        text = source.read().strip()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as problem:
        print(f"xl_comm: could not delete the key file {path} after reading it ({problem}); delete it", file=sys.stderr)
    if os.path.basename(os.path.dirname(path)).startswith(_PREFIX):
        # The executor's key directory, left empty: an executor killed by SIGKILL cannot remove it itself.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"key file {path} must hold {KEY_BYTES} bytes as hex, got {len(text)} characters")
    return key

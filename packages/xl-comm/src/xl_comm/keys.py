"""How a worker gets the executor's key without it ever appearing on a command line."""

from __future__ import annotations

import os
import stat
from collections.abc import MutableMapping

from xl_comm.framing import KEY_BYTES

KEY_ENV = "XL_COMM_KEY"
KEY_FILE_ENV = "XL_COMM_KEY_FILE"


def key_environment(key: bytes) -> dict[str, str]:
    """Environment entries that hand ``key`` to a worker (environment is private to the user, unlike argv)."""
    return {KEY_ENV: key.hex()}


def load_key(environ: MutableMapping[str, str] | None = None) -> bytes:
    """Read the key from ``XL_COMM_KEY`` or from the 0600 file named by ``XL_COMM_KEY_FILE``.

    The variables are removed from the environment so the user's function and its child processes never see them.
    """
    env = os.environ if environ is None else environ
    text = env.pop(KEY_ENV, None)
    path = env.pop(KEY_FILE_ENV, None)
    if text is None and path is not None:
        info = os.stat(path)
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise PermissionError(
                f"key file {path} must be owned by this user and not readable by others (chmod 600 {path})"
            )
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    if text is None:
        raise RuntimeError(
            f"no key: a worker needs {KEY_ENV} or {KEY_FILE_ENV} in its environment; "
            "workers are started by an executor, which sets it"
        )
    key = bytes.fromhex(text)
    if len(key) != KEY_BYTES:
        raise ValueError(f"{KEY_ENV} must hold {KEY_BYTES} bytes as hex, got {len(key)} bytes")
    return key

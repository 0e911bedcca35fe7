"""Functions the shared-memory tests send to real workers (imported there by reference)."""

from __future__ import annotations

import mmap
import os
import pickle
from typing import Any


def mapped(buffer: Any) -> bool:
    """Whether an out-of-band argument arrived as a mapping of shared memory (not in a zmq frame)."""
    return isinstance(memoryview(buffer).obj, mmap.mmap)


def doubled(buffer: Any) -> pickle.PickleBuffer:
    """A new large buffer (out of band on the way back): the argument's bytes twice."""
    return pickle.PickleBuffer(bytearray(bytes(memoryview(buffer)) * 2))


def write_through(buffer: Any) -> int:
    """Writes into the argument (a private, writable mapping) and returns its first byte."""
    view = memoryview(buffer)
    view[0] = (view[0] + 1) % 256
    return int(view[0])


def memfds() -> int:
    """How many memfds of xl-comm this process holds open or mapped."""
    fds = sum("memfd:xl-comm" in os.readlink(f"/proc/self/fd/{fd}") for fd in _fds())
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        return fds + sum("memfd:xl-comm" in line for line in maps)


def _fds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        found.append(fd)
    return found


def large(nbytes: int) -> pickle.PickleBuffer:
    """A large result from a small argument."""
    return pickle.PickleBuffer(bytearray(b"r" * nbytes))

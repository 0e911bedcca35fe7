"""Stable task keys: the same call gives the same key in every process and interpreter run."""

from __future__ import annotations

import io
import pickle
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle

_IPYKERNEL_DIR = re.compile(r"ipykernel_\d+")
_NOT_FILENAME_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Values written in full every time they occur, never as a reference to an earlier occurrence.
_NEVER_MEMOIZED = frozenset({str, bytes})


class _CanonicalPickler(pickle._Pickler):
    """A pickler whose output does not depend on hash randomisation.

    Set iteration order changes with PYTHONHASHSEED, so sets and frozensets (including the frozenset constants
    that ``x in {"a", "b"}`` compiles to) are written sorted by the canonical bytes of their elements. The C
    pickler handles sets before any hook can see them, hence the pure-Python pickler, with cloudpickle's
    reducers borrowed for functions, classes and code objects.

    Pickle writes an object it has seen before as a reference to it, by identity. Whether two equal strings or
    tuples are one object is an accident of how they were made: a module compiled from source and the same
    module loaded from its .pyc share them differently (a code object's co_filename, for one). So strings and
    bytes, which are leaves, are never memoized here. Everything else still is: containers that share parts
    (a tree of tuples built from one leaf doubles per level) and self-referencing ones stay finite.
    """

    dispatch_table = cloudpickle.Pickler.dispatch_table

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=5)
        self._cloud = cloudpickle.Pickler(io.BytesIO(), protocol=5)

    def memoize(self, obj: Any) -> None:
        if type(obj) not in _NEVER_MEMOIZED:
            super().memoize(obj)  # type: ignore[misc]

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) in (set, frozenset):
            return type(obj), (sorted(obj, key=canonical_bytes),)
        if isinstance(obj, types.CodeType) and _IPYKERNEL_DIR.search(obj.co_filename):
            # A notebook cell's code lives in /tmp/ipykernel_<pid>/<hash of the cell>.py; the pid changes on
            # every kernel restart, the cell hash does not.
            renamed = obj.replace(co_filename=_IPYKERNEL_DIR.sub("ipykernel", obj.co_filename))
            return self.dispatch_table[types.CodeType](renamed)
        return self._cloud.reducer_override(obj)


def canonical_bytes(obj: Any) -> bytes:
    """Deterministic cloudpickle bytes of ``obj`` (buffers in-band, sets sorted, notebook pids removed)."""
    out = io.BytesIO()
    _CanonicalPickler(out).dump(obj)
    return out.getvalue()


def function_name(fn: Any) -> str:
    """The readable prefix of a task key: the function's name, or the class name of a callable object."""
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str):
        name = type(fn).__name__
    return _NOT_FILENAME_SAFE.sub("_", name) or "task"


def task_key(fn: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> str:
    """``<function name><32 hex digits>`` for the call ``fn(*args, **kwargs)``.

    Keyword order does not matter (``f(a=1, b=2)`` and ``f(b=2, a=1)`` are one call). The digest is not a
    security boundary: it names cache entries, it does not authenticate them.
    """
    call = (fn, tuple(args), sorted((kwargs or {}).items()))
    import hashlib  # here, not at the top: a worker imports this module (function_name) but never hashes, and
    # hashlib loads OpenSSL, milliseconds on every worker start

    digest = hashlib.md5(canonical_bytes(call), usedforsecurity=False).hexdigest()
    return function_name(fn) + digest

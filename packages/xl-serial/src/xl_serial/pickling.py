"""cloudpickle with pickle protocol 5: a message is a list of frames.

Frame 0 is the pickle stream; every large contiguous buffer (numpy arrays, bytearrays, ...) that supports
out-of-band pickling follows as its own frame, so a 1 GB array is never copied into one bytes object.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Sequence
from typing import Any

import cloudpickle

#: Buffers smaller than this stay inside the pickle stream: a frame per tiny array costs more than a copy.
OUT_OF_BAND_MIN_BYTES = 64 * 1024

Frame = bytes | bytearray | memoryview | pickle.PickleBuffer

#: Exact types that plain pickle and cloudpickle write alike, never out of band (e.g. a task's small result).
_ATOMIC = frozenset({int, float, complex, str, bytes, bool, type(None)})


def dumps(obj: Any, *, min_out_of_band: int = OUT_OF_BAND_MIN_BYTES) -> list[Frame]:
    """Pickle ``obj`` into frames: ``[stream, buffer, buffer, ...]``.

    Functions and classes defined in ``__main__`` (scripts, notebooks) are pickled by value by cloudpickle,
    so they run in a worker that cannot import the caller's script.
    """
    if type(obj) is tuple and _plain(obj):
        # nothing cloudpickle writes differently: the C pickler alone is several times faster
        return [pickle.dumps(obj, protocol=5)]
    buffers: list[Frame] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:
        # pickle's rule: a false return value sends the buffer out of band.
        if buffer.raw().nbytes < min_out_of_band:
            return True
        buffers.append(buffer)
        return False

    stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=keep_large)
    if type(obj) is tuple:
        _learn_functions(obj)
    return [stream, *buffers]


# -- the plain path: a task's (function, args, kwargs) and its result are mostly importable functions and
# -- atomic values, for which cloudpickle's per-object Python hooks only confirm what the C pickler does anyway.

#: Functions cloudpickle was seen to pickle by reference (exactly as plain pickle does), by id, with that pickle;
#: the entry holds the function, so the id stays its own.
_BY_REFERENCE: dict[int, tuple[types.FunctionType, bytes]] = {}
_BY_REFERENCE_LIMIT = 4096
_registry_seen: set[str] = set()
#: Functions turned back from their references (see resolve_reference), by reference.
_RESOLVED: dict[bytes, types.FunctionType] = {}


def _plain(obj: tuple[Any, ...]) -> bool:
    """Whether plain pickle writes ``obj`` as cloudpickle would: atomic values, tuples, lists and dicts of them
    one level down (a call's arguments), and functions known to go by reference."""
    for item in obj:
        kind = type(item)
        if kind in _ATOMIC:
            continue
        if kind is tuple or kind is list:
            for inner in item:
                if type(inner) not in _ATOMIC:
                    return False
        elif kind is dict:
            for key, value in item.items():
                if type(key) not in _ATOMIC or type(value) not in _ATOMIC:
                    return False
        elif kind is not types.FunctionType or _reference_of(item) is None:
            return False
    return True


def function_reference(fn: Any) -> bytes | None:
    """The pickle of ``fn`` if it is a function known to travel by reference (its module and name, exactly as
    cloudpickle writes it), else None.

    For messages that name the same function call after call: the sender puts these bytes where the function
    would be and the receiver turns them back with :func:`resolve_reference`, so neither side runs pickle's
    import of the function's module per call (on CPython 3.11 that import costs more than a small task's
    whole pickle)."""
    return _reference_of(fn) if type(fn) is types.FunctionType else None


def resolve_reference(reference: bytes) -> Any:
    """The function named by a :func:`function_reference`: remembered, while its module still binds that name
    to it; otherwise unpickled (which imports the module, as unpickling the function itself would)."""
    fn = _RESOLVED.get(reference)
    if fn is not None and _named_by_module(fn):
        return fn
    fn = pickle.loads(reference)
    if type(fn) is types.FunctionType:
        if len(_RESOLVED) >= _BY_REFERENCE_LIMIT:
            _RESOLVED.clear()
        _RESOLVED[reference] = fn
    return fn


def _named_by_module(fn: types.FunctionType) -> bool:
    module = sys.modules.get(fn.__module__)
    return module is not None and getattr(module, fn.__qualname__, None) is fn


def _reference_of(fn: types.FunctionType) -> bytes | None:
    """The pickle of a function learnt by reference, if it still goes that way: its module still names it, and
    no module was registered for pickling by value since (cloudpickle would then ship it by value)."""
    entry = _BY_REFERENCE.get(id(fn))
    if entry is None or entry[0] is not fn or not _named_by_module(fn):
        return None
    if _registry() != _registry_seen:
        _forget_functions()
        return None
    return entry[1]


def _live_registry() -> Any:
    """cloudpickle's set of modules pickled by value, read in place (the public accessor copies it on every call,
    and this runs per task); the public accessor where cloudpickle keeps it elsewhere."""
    live = getattr(getattr(cloudpickle, "cloudpickle", None), "_PICKLE_BY_VALUE_MODULES", None)
    if isinstance(live, set):
        return lambda: live
    return cloudpickle.list_registry_pickle_by_value


_registry = _live_registry()


def _learn_functions(obj: tuple[Any, ...]) -> None:
    if _registry() != _registry_seen:  # what was learnt under another registry no longer holds
        _forget_functions()
    for item in obj:
        if type(item) is types.FunctionType and id(item) not in _BY_REFERENCE and "." not in item.__qualname__:
            try:
                reference = pickle.dumps(item, protocol=5)
                same = cloudpickle.dumps(item, protocol=5) == reference
            except Exception:  # plain pickle cannot: lambdas, closures, functions of __main__ ...
                same = False
            if same:
                if len(_BY_REFERENCE) >= _BY_REFERENCE_LIMIT:
                    _BY_REFERENCE.clear()
                _BY_REFERENCE[id(item)] = (item, reference)


def _forget_functions() -> None:
    global _registry_seen
    _BY_REFERENCE.clear()
    _registry_seen = cloudpickle.list_registry_pickle_by_value()


def loads(frames: Sequence[Any]) -> Any:
    """Inverse of :func:`dumps`; ``frames`` may be bytes, memoryviews or zmq frames (anything with a buffer)."""
    if not frames:
        raise ValueError("cannot unpickle an empty frame list: a message has at least the pickle stream frame")
    if len(frames) == 1:
        stream = frames[0]
        return pickle.loads(stream if type(stream) is bytes else _view(stream))
    views = [_view(frame) for frame in frames]
    return pickle.loads(views[0], buffers=views[1:])


def _view(frame: Any) -> memoryview:
    buffer = getattr(frame, "buffer", None)  # zmq.Frame exposes its bytes without a copy here
    return memoryview(buffer if buffer is not None else frame)


def frames_nbytes(frames: Sequence[Frame]) -> int:
    """Total size of a frame list in bytes (for logging and benchmarks)."""
    return sum(memoryview(f).nbytes if not isinstance(f, pickle.PickleBuffer) else f.raw().nbytes for f in frames)


def register_by_value(module: types.ModuleType | str) -> None:
    """Pickle everything defined in ``module`` by value, for modules the workers cannot import.

    ``__main__`` needs no registration (cloudpickle already ships it by value); use this for helper modules that
    live next to a notebook or a test file rather than on the workers' ``sys.path``.
    """
    mod = sys.modules[module] if isinstance(module, str) else module
    if mod.__name__ == "__main__":
        return
    try:
        cloudpickle.register_pickle_by_value(mod)
    except ValueError:
        # cloudpickle refuses modules missing from sys.modules (e.g. created on the fly); nothing to register.
        return
    _forget_functions()

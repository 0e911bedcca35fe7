"""cloudpickle with pickle protocol 5: a message is a list of frames.

Frame 0 is the pickle stream; every large contiguous buffer (numpy arrays, bytearrays, ...) that supports
out-of-band pickling follows as its own frame, so a 1 GB array is never copied into one bytes object.
"""

from __future__ import annotations

import pickle
import sys
import threading
import types
import weakref
from collections.abc import Sequence
from typing import Any

import cloudpickle

from xl_serial.fingerprint import Fingerprint, fingerprint

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
#: Functions turned back from their pickles (see resolve_function), by those bytes, least recently used first:
#: the function and the fingerprint of its state taken right after unpickling (None for one that came by
#: reference: it is re-checked against its module instead).
_RESOLVED: dict[bytes, tuple[types.FunctionType, Fingerprint | None]] = {}
_RESOLVED_LIMIT = 256
#: Larger pickles of a function are unpickled per call rather than kept, so the kept ones stay under 16 MiB.
_RESOLVED_MAX_BYTES = 1 << 16
#: The sender keeps a function's by-value pickle up to this size (beyond, it would double a large captured value).
_KEEP_MAX_BYTES = 1 << 20


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


def function_stream(fn: Any) -> bytes | None:
    """The bytes that stand for the function ``fn`` in a message, or None (then pickle ``fn`` with the message).

    A function known to travel by reference gives its :func:`function_reference`. A function cloudpickle ships
    by value (defined in ``__main__`` or inside another function) gives its by-value pickle, taken once and reused
    while nothing that pickle captured has changed (see :mod:`xl_serial.fingerprint`): rebinding a global it
    names, assigning its ``__code__``, ``__defaults__`` or a closure cell, all give a fresh pickle. When its
    state holds something that can change unseen (a list, an instance, a class defined in ``__main__``), None.
    The receiver turns the bytes back with :func:`resolve_function`."""
    if type(fn) is not types.FunctionType:
        return None
    reference = _reference_of(fn)
    if reference is not None:
        return reference
    if _registry() != _registry_seen:
        _forget_functions()
    entry = _BY_VALUE.get(id(fn))
    if entry is None or entry.ref() is not fn:
        if _travels_by_reference(fn) is not False:
            return _reference_of(fn)  # learnt just now, or None: cloudpickle decides with the message
        entry = _BY_VALUE.get(id(fn))
        if entry is None:
            return None
    cached = entry.cached  # one read: the pair is replaced whole, never field by field
    if cached is not None and cached[0].still_holds(fn, _travels_by_reference, _registered):
        return cached[1]
    current = fingerprint(fn, _travels_by_reference, _registered)
    if current is None:
        return None
    if cached is not None and cached[0].same(current):
        return cached[1]
    try:
        stream: bytes = cloudpickle.dumps(fn, protocol=5)
    except Exception:  # the message's own pickling raises it again, for the caller's Future
        return None
    if len(stream) <= _KEEP_MAX_BYTES:
        # the fingerprint was taken before pickling: a change in between gives a new fingerprint next time
        entry.cached = (current, stream)
    return stream


def resolve_function(stream: bytes) -> Any:
    """The function pickled in ``stream`` (a :func:`function_stream` or :func:`function_reference`).

    Kept by its bytes, so a function sent call after call is unpickled once. The key is the bytes themselves,
    compared in full on a hit, so another pickle can never match. A function that came by reference is kept
    while its module still binds that name to it. One that came by value is kept while its state is what the
    bytes made it: a function that changed itself (an attribute, a global it rebinds, a default) is unpickled
    afresh, so every call starts from the state the caller sent, as if unpickled per call; one whose state
    cannot be fingerprinted is not kept."""
    entry = _RESOLVED.pop(stream, None)
    if entry is not None:
        fn, state = entry
        if _named_by_module(fn) if state is None else _unchanged(fn, state):
            _RESOLVED[stream] = entry  # now the most recently used
            return fn
    fn = pickle.loads(stream)
    if type(fn) is types.FunctionType and len(stream) <= _RESOLVED_MAX_BYTES:
        state = None if _named_by_module(fn) else fingerprint(fn, _travels_by_reference, _registered)
        if state is not None or _named_by_module(fn):
            _make_room(_RESOLVED, _RESOLVED_LIMIT)
            _RESOLVED[bytes(stream)] = (fn, state)
    return fn


def _unchanged(fn: types.FunctionType, state: Fingerprint) -> bool:
    if state.still_holds(fn, _travels_by_reference, _registered):
        return True
    current = fingerprint(fn, _travels_by_reference, _registered)
    return current is not None and current.same(state)


#: The name this used before function_stream existed: references only.
resolve_reference = resolve_function


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


class _ByValue:
    """A function seen to travel by value: a weak reference to it (a redefined function lets the old one go), and
    its last by-value pickle with the fingerprint taken just before it."""

    __slots__ = ("cached", "ref")

    def __init__(self, fn: types.FunctionType) -> None:
        key = id(fn)
        self.ref = weakref.ref(fn, lambda dead: _drop_by_value(key, dead))
        self.cached: tuple[Fingerprint, bytes] | None = None


#: Functions seen to travel by value, by id (the entry's weak reference tells a reused id apart).
_BY_VALUE: dict[int, _ByValue] = {}
_BY_VALUE_LIMIT = 1024


def _drop_by_value(key: int, dead: weakref.ref[types.FunctionType]) -> None:
    entry = _BY_VALUE.get(key)
    if entry is not None and entry.ref is dead:
        _BY_VALUE.pop(key, None)


def _travels_by_reference(fn: types.FunctionType) -> bool | None:
    """Whether cloudpickle pickles ``fn`` by reference (True) or by value (False), learnt once per function
    object; None when that cannot be told cheaply (methods: cloudpickle decides per message)."""
    if _reference_of(fn) is not None:
        return True
    entry = _BY_VALUE.get(id(fn))
    if entry is not None and entry.ref() is fn:
        return False
    qualname = fn.__qualname__
    if fn.__module__ == "__main__" or "<locals>" in qualname:
        by_reference = False  # cloudpickle never looks these up by name: no need to pickle to find out
    elif "." in qualname:
        return None
    else:
        try:
            reference = pickle.dumps(fn, protocol=5)
            by_reference = cloudpickle.dumps(fn, protocol=5) == reference
        except Exception:  # plain pickle cannot: lambdas, functions a module no longer names ...
            by_reference = False
        if by_reference:
            with _learning:
                _make_room(_BY_REFERENCE, _BY_REFERENCE_LIMIT)
                _BY_REFERENCE[id(fn)] = (fn, reference)
            return True
    with _learning:
        _make_room(_BY_VALUE, _BY_VALUE_LIMIT)
        _BY_VALUE[id(fn)] = _ByValue(fn)
    return False


#: Held while a function is learnt: two threads making room at once could each find the other's oldest entry gone.
#: Reentrant: a collection while it is held may run a finalizer that sends a function of its own.
_learning = threading.RLock()


def _make_room(learnt: dict[Any, Any], limit: int) -> None:
    """Drop the oldest (least recently used) entries until one more fits. Not all of them: the function whose walk
    learns this one (a function it calls) was learnt just before, and its kept pickle must survive the walk."""
    while len(learnt) >= limit:
        try:
            oldest = next(iter(learnt))
        except RuntimeError:  # a weak reference's callback dropped an entry meanwhile: look again
            continue
        learnt.pop(oldest, None)


def _registered(module_name: str) -> bool:
    """Whether cloudpickle pickles the module ``module_name`` (or a package it is in) by value."""
    registry = _registry()
    while registry:
        if module_name in registry:
            return True
        module_name, dot, _ = module_name.rpartition(".")
        if not dot:
            return False
    return False


def _learn_functions(obj: tuple[Any, ...]) -> None:
    if _registry() != _registry_seen:  # what was learnt under another registry no longer holds
        _forget_functions()
    for item in obj:
        if type(item) is types.FunctionType and id(item) not in _BY_REFERENCE:
            _travels_by_reference(item)


def _forget_functions() -> None:
    global _registry_seen
    _BY_REFERENCE.clear()
    _BY_VALUE.clear()
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

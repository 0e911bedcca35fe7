"""What cloudpickle captures when it pickles a function by value, as objects compared by identity.

A function defined in ``__main__`` (a script, a notebook) or inside another function travels by value: its code,
name, defaults, keyword defaults, ``__dict__``, annotations, closure cell contents and the globals its code names
(module attributes ``__package__``, ``__name__``, ``__path__``, ``__file__`` too). Two fingerprints of one function
are the same only if every one of those is the same object; so a pickle taken under one fingerprint is still the
pickle of the function while its fingerprint is unchanged.

Identity only proves "unchanged" for objects that cannot change in place. The fingerprint therefore accepts
atomic values, code objects, tuples and frozensets of accepted values, module-level builtins, and modules,
classes and functions that cloudpickle pickles by name; functions it pickles by value are walked in turn. For
anything else (a list, a dict, an array, an instance, a class defined in ``__main__``) it gives up: the caller
must then pickle the function afresh.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import cloudpickle

#: Types whose instances never change: the same object means the same pickle.
_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis), types.CodeType})
#: Walking stops here; a deeper or larger state is not fingerprinted (the function is pickled afresh).
MAX_DEPTH = 16
MAX_PARTS = 2048
_MAX_ITEMS = 256

#: Markers. The parts are a pre-order walk in which every variable-length run (a dict's items) is closed by _END,
#: so two different states never flatten into the same sequence.
_END = object()
_ROOT = object()  # the fingerprinted function met again (recursion); not held, so the cache can let it die
_MISSING = object()  # a global the code names but that is not bound (binding it later changes the pickle)
_EMPTY = object()  # an empty closure cell
_BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")

ByReference = Callable[[types.FunctionType], bool | None]


class Fingerprint:
    """The captured objects (held, so their ids stay theirs) and their ids; and, when the function uses a
    package, how many modules were imported (cloudpickle also sends the package's submodules imported by then)."""

    __slots__ = ("ids", "modules", "parts")

    def __init__(self, parts: list[Any], modules: int | None) -> None:
        self.parts = parts  # the walk's own list, never changed after
        self.ids = tuple(map(id, parts))
        self.modules = modules

    def same(self, other: Fingerprint) -> bool:
        return self.ids == other.ids and self.modules == other.modules


def fingerprint(
    fn: types.FunctionType, by_reference: ByReference, registered: Callable[[str], bool]
) -> Fingerprint | None:
    """The fingerprint of ``fn``, or None when its state holds something identity cannot vouch for.

    ``by_reference(g)`` tells whether cloudpickle pickles the function ``g`` by name (True), by value (False), or
    cannot be told cheaply (None: no fingerprint); ``registered(module_name)`` whether a module is registered for
    pickling by value."""
    walk = _Walk(fn, by_reference, registered)
    try:
        if not walk.function(fn, 0) or len(walk.parts) > MAX_PARTS:
            return None
    except Exception:  # e.g. a dict changed size while walked (another thread): no fingerprint this time
        return None
    return Fingerprint(walk.parts, len(sys.modules) if walk.package else None)


class _Walk:
    __slots__ = ("by_reference", "package", "parts", "registered", "root", "seen")

    def __init__(self, root: types.FunctionType, by_reference: ByReference, registered: Callable[[str], bool]) -> None:
        self.root = root
        self.by_reference = by_reference
        self.registered = registered
        self.parts: list[Any] = []
        self.seen: set[int] = set()  # functions walked besides the root (which is told apart by identity)
        self.package = False

    def function(self, fn: types.FunctionType, depth: int) -> bool:
        # Runs on every submit of a function defined in __main__: atomic values are appended inline, the rest
        # goes through value().
        parts = self.parts
        code = fn.__code__
        module, doc, defaults = fn.__module__, fn.__doc__, fn.__defaults__
        parts += (code, fn.__name__, fn.__qualname__, module, doc, defaults)
        if type(module) not in _IMMUTABLE or type(doc) not in _IMMUTABLE:
            return False
        if defaults is not None:
            if len(defaults) > _MAX_ITEMS:
                return False
            for item in defaults:  # the tuple pins its items; those that are not atomic add their own parts
                if type(item) not in _IMMUTABLE and not self.value(item, depth + 1):
                    return False
        for mapping in (fn.__kwdefaults__, fn.__dict__, fn.__annotations__):
            if mapping is None:
                parts.append(None)
            elif type(mapping) is dict and not mapping:  # the common case, without a call
                parts.append(_END)
            elif not self.mapping(mapping, depth):
                return False
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # not bound yet
                parts.append(_EMPTY)
                continue
            if type(contents) in _IMMUTABLE:
                parts.append(contents)
            elif not self.value(contents, depth):
                return False
        namespace = fn.__globals__
        for names in (global_names(code), _BASE_GLOBALS):
            for name in names:
                value = namespace.get(name, _MISSING)
                if type(value) in _IMMUTABLE or value is _MISSING:
                    parts.append(value)
                elif not self.value(value, depth):
                    return False
        return True

    def mapping(self, mapping: Mapping[Any, Any] | None, depth: int) -> bool:
        if mapping is None:
            self.parts.append(None)
            return True
        if type(mapping) is not dict or len(mapping) > _MAX_ITEMS:
            return False
        for key, value in mapping.items():
            if not (self.value(key, depth) and self.value(value, depth)):
                return False
        self.parts.append(_END)
        return True

    def value(self, value: Any, depth: int) -> bool:
        kind = type(value)
        if kind in _IMMUTABLE:
            self.parts.append(value)
            return True
        if kind is tuple or kind is frozenset:
            # the container pins its items; those that are not atomic add their own parts
            if len(value) > _MAX_ITEMS or depth >= MAX_DEPTH:
                return False
            self.parts.append(value)
            return all(type(item) in _IMMUTABLE or self.value(item, depth + 1) for item in value)
        if kind is types.FunctionType:
            return self.nested_function(value, depth)
        if kind is types.ModuleType:
            # pickled by name (cloudpickle imports it on the other side) unless registered by value
            name = value.__name__
            if sys.modules.get(name) is not value or self.registered(name):
                return False
            self.package = self.package or bool(getattr(value, "__package__", None))
            self.parts.append(value)
            return True
        if kind is types.BuiltinFunctionType:
            # math.sqrt is pickled by name; [].append would carry its list along
            owner = value.__self__
            if owner is not None and type(owner) is not types.ModuleType:
                return False
            self.parts.append(value)
            return True
        if isinstance(value, type):
            if not self.class_by_reference(value):
                return False  # a class defined in __main__ travels by value, with a __dict__ that may change
            self.parts.append(value)
            return True
        return False

    def nested_function(self, fn: types.FunctionType, depth: int) -> bool:
        if fn is self.root:
            self.parts.append(_ROOT)
            return True
        if id(fn) in self.seen:  # its state is already in the parts, at its first appearance
            self.parts.append(fn)
            return True
        by_reference = self.by_reference(fn)
        if by_reference is None or depth >= MAX_DEPTH or len(self.parts) > MAX_PARTS:
            return False
        self.parts.append(fn)
        if by_reference:
            return True
        self.seen.add(id(fn))
        return self.function(fn, depth + 1)

    def class_by_reference(self, cls: type) -> bool:
        module_name = getattr(cls, "__module__", None)
        qualname = getattr(cls, "__qualname__", None)
        if type(module_name) is not str or type(qualname) is not str or module_name == "__main__":
            return False
        found: Any = sys.modules.get(module_name)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        return found is cls and not self.registered(module_name)


_NAMES: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}
_NAMES_LIMIT = 4096


def global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` (and the code nested in it) reads or writes, as cloudpickle finds them; kept per
    code object (the entry holds the code, so its id stays its own)."""
    entry = _NAMES.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    extract = getattr(getattr(cloudpickle, "cloudpickle", None), "_extract_code_globals", None)
    names = tuple(extract(code)) if extract is not None else _all_names(code)
    if len(_NAMES) >= _NAMES_LIMIT:
        _NAMES.clear()
    _NAMES[id(code)] = (code, names)
    return names


def _all_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name ``code`` and its nested code use: more than the globals (attributes too), never fewer."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_all_names(const)))
    return tuple(names)

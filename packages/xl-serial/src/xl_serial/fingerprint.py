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

The walk runs on every submit of such a function, so a fingerprint also keeps a quick form: the ids of what each
function it walked holds at its top level (attributes, the items of its dicts, cell contents, the globals its
code names), and the objects whose verdict depends on the world outside the function (a class or module still
importable by that name, a function still pickled by name). Everything else the walk reads sits inside tuples
and frozensets, which the top level pins by identity; so the same top level and the same verdicts mean the walk
would give the same parts, at a fraction of its cost (:meth:`Fingerprint.still_holds`).
"""

from __future__ import annotations

import builtins
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from xl_serial.top_level import EMPTY as _EMPTY
from xl_serial.top_level import END as _END
from xl_serial.top_level import MISSING as _MISSING
from xl_serial.top_level import ROOT as _ROOT
from xl_serial.top_level import Check, compile_check, names_read, top_level

#: Types whose instances never change: the same object means the same pickle.
_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis), types.CodeType})
#: Walking stops here; a deeper or larger state is not fingerprinted (the function is pickled afresh).
MAX_DEPTH = 16
MAX_PARTS = 2048
_MAX_ITEMS = 256

#: The builtins' classes (int, str, ...): cloudpickle always names them, wherever a module rebinds its names.
_BUILTIN_CLASSES = frozenset(value for value in vars(builtins).values() if isinstance(value, type))

ByReference = Callable[[types.FunctionType], bool | None]


class Fingerprint:
    """The captured objects (held, so their ids stay theirs) and their ids; and, when the function uses a
    package, how many modules were imported (cloudpickle also sends the package's submodules imported by then).

    The quick form (see :mod:`xl_serial.top_level`): ``top``, the ids of the top-level state of the root and of
    ``functions`` (the other functions walked by value, in walk order), ``held``, those objects (the root as
    ROOT, so the cache can let it die), and the objects whose verdict is re-asked: ``modules``, ``classes`` and
    ``named`` (functions pickled by name). A fingerprint that holds twice compiles its top level into a check
    that reads it with no list and no call per object."""

    __slots__ = (
        "check",
        "classes",
        "functions",
        "held",
        "hits",
        "ids",
        "modules",
        "named",
        "package_modules",
        "parts",
        "top",
    )

    def __init__(self, walk: _Walk, top: list[Any] | None) -> None:
        self.parts = walk.parts  # the walk's own list, never changed after
        self.ids = tuple(map(id, walk.parts))
        self.package_modules = len(sys.modules) if walk.package else None
        root = walk.root
        self.top = None if top is None else tuple(map(id, top))
        self.held = None if top is None else [_ROOT if part is root else part for part in top]
        self.check: Check | None = None
        self.hits = 0
        self.functions = tuple(walk.functions)
        self.modules = tuple(walk.modules)
        self.classes = tuple(walk.classes)
        self.named = tuple(walk.named)

    def same(self, other: Fingerprint) -> bool:
        return self.ids == other.ids and self.package_modules == other.package_modules

    def still_holds(self, fn: types.FunctionType, by_reference: ByReference, registered: Callable[[str], bool]) -> bool:
        """Whether ``fn`` (the function this was taken of) would give this fingerprint again, told from its top
        level. False means "not known": the caller walks it afresh."""
        check = self.check
        if check is not None:
            try:
                if not check(fn):
                    return False
            except Exception:  # e.g. a dict that changed size while read (another thread)
                return False
        elif not self._top_holds(fn):
            return False
        if self.package_modules is not None and len(sys.modules) != self.package_modules:
            return False
        for function in self.functions:
            if by_reference(function) is not False:
                return False
        for function in self.named:
            if by_reference(function) is not True:
                return False
        for module in self.modules:
            if not _module_by_reference(module, registered):
                return False
        return all(_class_by_reference(cls, registered) for cls in self.classes)

    def _top_holds(self, fn: types.FunctionType) -> bool:
        top, held = self.top, self.held
        if top is None or held is None:
            return False
        parts: list[Any] = []
        if not top_level(fn, parts):
            return False
        for function in self.functions:
            if not top_level(function, parts):
                return False
        if tuple(map(id, parts)) != top:
            return False
        self.hits += 1
        if self.hits == 2:  # reused: worth a compile (built from what is held, not from a second read)
            try:
                self.check = compile_check(fn, self.functions, held)
            except Exception:  # e.g. MemoryError: the ids keep answering
                self.check = None
        return True


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
        # Taken after the walk: a change in between makes the quick form disagree with the state next time,
        # which only costs a walk.
        top: list[Any] = []
        quick = top_level(fn, top) and all(top_level(function, top) for function in walk.functions)
    except Exception:  # e.g. a dict changed size while walked (another thread): no fingerprint this time
        return None
    return Fingerprint(walk, top if quick else None)


class _Walk:
    __slots__ = (
        "by_reference",
        "classes",
        "functions",
        "modules",
        "named",
        "package",
        "parts",
        "registered",
        "root",
        "seen",
    )

    def __init__(self, root: types.FunctionType, by_reference: ByReference, registered: Callable[[str], bool]) -> None:
        self.root = root
        self.by_reference = by_reference
        self.registered = registered
        self.parts: list[Any] = []
        self.package = False
        # What the quick form re-asks, in walk order: functions walked by value besides the root (which is told
        # apart by identity), modules, classes other than the builtins', and functions pickled by name.
        self.functions: list[types.FunctionType] = []
        self.modules: list[types.ModuleType] = []
        self.classes: list[type] = []
        self.named: list[types.FunctionType] = []
        self.seen: set[int] = set()  # ids of self.functions

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
        for name in names_read(code):
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
            if not _module_by_reference(value, self.registered):
                return False
            self.package = self.package or bool(getattr(value, "__package__", None))
            self.parts.append(value)
            self.modules.append(value)
            return True
        if kind is types.BuiltinFunctionType:
            # math.sqrt is pickled by name; [].append would carry its list along
            owner = value.__self__
            if owner is not None and type(owner) is not types.ModuleType:
                return False
            self.parts.append(value)
            return True
        if isinstance(value, type):
            if value in _BUILTIN_CLASSES:
                self.parts.append(value)
                return True
            if not _class_by_reference(value, self.registered):
                return False  # a class defined in __main__ travels by value, with a __dict__ that may change
            self.parts.append(value)
            self.classes.append(value)
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
            self.named.append(fn)
            return True
        self.functions.append(fn)
        self.seen.add(id(fn))
        return self.function(fn, depth + 1)


def _module_by_reference(module: types.ModuleType, registered: Callable[[str], bool]) -> bool:
    name = module.__name__
    return sys.modules.get(name) is module and not registered(name)


def _class_by_reference(cls: type, registered: Callable[[str], bool]) -> bool:
    module_name = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None)
    if type(module_name) is not str or type(qualname) is not str or module_name == "__main__":
        return False
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is cls and not registered(module_name)

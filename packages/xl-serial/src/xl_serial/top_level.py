"""What a function holds at its top level: the quick form of a fingerprint (see :mod:`xl_serial.fingerprint`).

The top level of a function is what can change without a new function object: its code, names, module,
docstring and defaults, the items of its ``__kwdefaults__``, ``__dict__`` and ``__annotations__``, the contents of
its closure cells, and the globals its code names (plus the module attributes cloudpickle always sends).
Everything deeper that a fingerprint's walk reads sits in tuples and frozensets, which the top level pins by
identity, or in other functions, which have a top level of their own.

:func:`top_level` lists those objects; comparing their ids with a fingerprint's costs a call per object.
:func:`compile_check` turns one such list into a function that reads the same attributes and compares each
with ``is``, several times faster; it runs on every submit of a function defined in ``__main__``. Its source
holds only names this module makes up; the objects (global names included) reach it as arguments.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import cloudpickle

#: Markers. In a fingerprint's parts every variable-length run (a dict's items) is closed by END, so two
#: different states never flatten into the same sequence.
END = object()
ROOT = object()  # the fingerprinted function met again (recursion); not held, so the cache can let it die
MISSING = object()  # a global the code names but that is not bound (binding it later changes the pickle)
EMPTY = object()  # an empty closure cell
NO_MAPPING = object()  # a function's __kwdefaults__ (or another of its dicts) is None
BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")
_ATTRIBUTES = ("__code__", "__name__", "__qualname__", "__module__", "__doc__", "__defaults__")
_MAPPINGS = ("__kwdefaults__", "__dict__", "__annotations__")
#: A larger top level is compared by ids: its check's source would cost more to compile than it saves.
MAX_COMPILED = 512

Check = Callable[[types.FunctionType], bool]


def top_level(fn: types.FunctionType, parts: list[Any]) -> bool:
    """Append what ``fn`` holds at its top level, in a fixed order; False if one of its dicts is not a dict
    (the walk refuses those too)."""
    code = fn.__code__
    parts += (code, fn.__name__, fn.__qualname__, fn.__module__, fn.__doc__, fn.__defaults__)
    for mapping in (fn.__kwdefaults__, fn.__dict__, fn.__annotations__):
        if mapping is None:
            parts.append(NO_MAPPING)
            continue
        if type(mapping) is not dict:
            return False
        if mapping:
            parts += mapping  # keys, then values, then the end: two dicts never flatten alike
            parts += mapping.values()
        parts.append(END)
    closure = fn.__closure__
    if closure is not None:
        for cell in closure:
            try:
                parts.append(cell.cell_contents)
            except ValueError:  # not bound yet
                parts.append(EMPTY)
    parts += map(fn.__globals__.get, names_read(code), repeat(MISSING))
    return True


def compile_check(
    root: types.FunctionType, functions: Sequence[types.FunctionType], held: Sequence[Any]
) -> Check | None:
    """A function that tells, for ``root``, whether :func:`top_level` of it and of ``functions`` would list
    exactly ``held`` (where ROOT stands for the root); None if ``held`` is not such a list or too long.

    It may raise (a dict changed size while it was read): the caller counts that as "changed"."""
    if len(held) > MAX_COMPILED:
        return None
    constants: list[Any] = []

    def name_of(obj: Any) -> str:
        if obj is ROOT:
            return "fn"
        constants.append(obj)
        return f"c{len(constants) - 1}"

    terms: list[str] = []
    at = 0
    for function in (root, *functions):
        subject = "fn" if function is root else name_of(function)
        code = held[at]
        for attribute in _ATTRIBUTES:
            terms.append(f"{subject}.{attribute} is {name_of(held[at])}")
            at += 1
        for attribute in _MAPPINGS:
            if held[at] is NO_MAPPING:
                terms.append(f"{subject}.{attribute} is None")
                at += 1
                continue
            end = _end_of(held, at)
            size = (end - at) // 2
            terms.append(f"type(d := {subject}.{attribute}) is dict and len(d) == {size}")
            if size:
                terms.append("(i := iter(d)) is not None")
                terms += (f"next(i) is {name_of(key)}" for key in held[at : at + size])
                terms.append("(i := iter(d.values())) is not None")
                terms += (f"next(i) is {name_of(value)}" for value in held[at + size : end])
            at = end + 1
        for index in range(len(function.__closure__ or ())):
            terms.append(f"contents({subject}.__closure__[{index}]) is {name_of(held[at])}")
            at += 1
        if type(code) is not types.CodeType:
            return None
        lookup = name_of(function.__globals__.get)
        for name in names_read(code):
            terms.append(f"{lookup}({name_of(name)}, missing) is {name_of(held[at])}")
            at += 1
    if at != len(held):
        return None
    parameters = ", ".join(f"c{index}" for index in range(len(constants)))
    source = (
        f"def factory(missing, contents, type, dict, len, iter, next, {parameters}):\n"
        "    def check(fn):\n"
        f"        return ({' and '.join(terms)})\n"
        "    return check\n"
    )
    namespace: dict[str, Any] = {"__builtins__": {}}
    exec(compile(source, "<xl_serial top-level check>", "exec"), namespace)
    check: Check = namespace["factory"](MISSING, _contents, type, dict, len, iter, next, *constants)
    return check


def _end_of(held: Sequence[Any], start: int) -> int:
    for index in range(start, len(held)):
        if held[index] is END:
            return index
    raise ValueError("a dict's run in the held top level has no end marker")


def _contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return EMPTY


_NAMES_LIMIT = 4096
#: The globals the top level reads per code object: those its code names, then the base globals. The entry holds
#: the code, so its id stays its own.
_NAMES_READ: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}


def names_read(code: types.CodeType) -> tuple[str, ...]:
    """The globals a function with ``code`` is read for, by the walk and by :func:`top_level` alike: the global
    names of :func:`global_names`, then :data:`BASE_GLOBALS`; kept per code object."""
    entry = _NAMES_READ.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    if len(_NAMES_READ) >= _NAMES_LIMIT:
        _NAMES_READ.clear()
    names = global_names(code) + BASE_GLOBALS
    _NAMES_READ[id(code)] = (code, names)
    return names


def global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` (and the code nested in it) reads or writes, as cloudpickle finds them."""
    extract = getattr(getattr(cloudpickle, "cloudpickle", None), "_extract_code_globals", None)
    return tuple(extract(code)) if extract is not None else _all_names(code)


def _all_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name ``code`` and its nested code use: more than the globals (attributes too), never fewer."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_all_names(const)))
    return tuple(names)

"""Functions pickled by value are pickled once while unchanged, and a changed one is never sent stale."""

from __future__ import annotations

import gc
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest
import xl_serial
from hypothesis import given, settings
from hypothesis import strategies as st
from xl_serial import pickling

# A module the notebook imports, whose class it names: rebinding the module's name makes that class travel by
# value (cloudpickle can no longer name it), so a pickle that named it would be stale.
THINGS = types.ModuleType("xl_serial_test_things")
sys.modules[THINGS.__name__] = THINGS


def thing_class(marker: Any) -> type:
    cls = type("Thing", (), {"marker": marker})
    cls.__module__ = THINGS.__name__
    return cls


ORIGINAL_THING = thing_class("original")
THINGS.Thing = ORIGINAL_THING  # type: ignore[attr-defined]

# A notebook cell: exec'd into a namespace named __main__, so cloudpickle ships its functions by value.
CELL = """
import xl_serial_test_things as things
K = 1
THING = things.Thing

def helper(x):
    return x * 2

def top(x, d=100, *, kw=1000):
    try:
        maybe = MAYBE
    except NameError:
        maybe = "unbound"
    return ("top", x, K, helper(x), d, kw, getattr(top, "tag", None), maybe)

def make(c):
    def inner(x, d=100, *, kw=1000):
        return ("inner", x, K, helper(x), c, d, kw, getattr(inner, "tag", None))
    return inner

inner = make(10)

def flat(x: int, d: str = 100, *, kw: float = 1000) -> int:
    return ("flat", x, K, d, kw, getattr(flat, "tag", None), THING.marker, things.Thing.marker,
            sorted(map(repr, flat.__annotations__.items())))

def make_flat(c):
    def flat_inner(x):
        return ("flat inner", x, c, later, getattr(flat_inner, "tag", None))
    later = 2
    return flat_inner

flat_inner = make_flat(20)
"""
FUNCTIONS = ("top", "inner", "flat", "flat_inner")

# Other code for the same functions (same free variables, so it can be assigned to __code__).
VARIANTS = """
def top_variant(x, d=100, *, kw=1000):
    return ("top variant {k}", x, K, d, kw)

def make_variant(c):
    def inner(x, d=100, *, kw=1000):
        return ("inner variant {k}", x, c, inner is not None)
    return inner

def helper_variant(x):
    return x * {k}
"""


def notebook() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(CELL, namespace)
    return namespace


def variant(namespace: dict[str, Any], name: str, k: int) -> Any:
    """A function compiled from VARIANTS with the constant ``k``, in ``namespace`` (so it reads its globals)."""
    scratch = dict(namespace)
    exec(VARIANTS.format(k=k), scratch)
    found = scratch[name]
    return found(0) if name == "make_variant" else found


def outcome(fn: Callable[..., Any]) -> str:
    try:
        return repr(fn(3))
    except Exception as problem:  # an emptied cell: the same error on both sides
        return f"raised {type(problem).__name__}"


def shipped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a worker runs for ``fn``: the kept function of its stream, or, without one, a fresh pickle."""
    stream = xl_serial.function_stream(fn)
    if stream is None:
        return xl_serial.loads(xl_serial.dumps(fn))  # type: ignore[no-any-return]
    return xl_serial.resolve_function(bytes(stream))  # a copy of the bytes, as a message delivers them


values = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.sampled_from([0.0, -0.0, 1, 1.0, True, None, "", "x"]),
    st.text(max_size=5),
    st.tuples(st.integers(), st.text(max_size=3)),
)
operations = st.one_of(
    st.tuples(st.just("global"), values),
    st.tuples(st.just("global list"), values),
    st.tuples(st.just("append"), values),
    st.tuples(st.just("defaults"), values),
    st.tuples(st.just("kwdefaults"), values),
    st.tuples(st.just("cell"), values),
    st.tuples(st.just("attribute"), values),
    st.tuples(st.just("bind missing"), values),
    st.tuples(st.just("unbind missing"), st.none()),
    st.tuples(st.just("code"), st.integers(0, 3)),
    st.tuples(st.just("helper code"), st.integers(0, 3)),
    st.tuples(st.just("rebind helper"), st.integers(0, 3)),
    st.tuples(st.just("redefine"), st.none()),
    st.tuples(st.just("nothing"), st.none()),
    st.tuples(st.just("annotate"), values),
    st.tuples(st.just("annotations"), values),
    st.tuples(st.just("annotate with a class"), st.booleans()),
    st.tuples(st.just("rebind the module's class"), values),
    st.tuples(st.just("restore the module's class"), st.none()),
    st.tuples(st.just("empty a cell"), st.none()),
    st.tuples(st.just("attribute dict"), values),
)


def apply(namespace: dict[str, Any], operation: str, value: Any) -> None:
    top, inner, flat, flat_inner = (namespace[name] for name in FUNCTIONS)
    if operation == "global":
        namespace["K"] = value
    elif operation == "global list":
        namespace["K"] = [value]
    elif operation == "append" and isinstance(namespace["K"], list):
        namespace["K"].append(value)  # changed in place: identity alone would miss it
    elif operation == "defaults":
        top.__defaults__ = inner.__defaults__ = flat.__defaults__ = (value,)
    elif operation == "kwdefaults":
        top.__kwdefaults__ = inner.__kwdefaults__ = flat.__kwdefaults__ = {"kw": value}
    elif operation == "cell":
        inner.__closure__[inner.__code__.co_freevars.index("c")].cell_contents = value
        flat_inner.__closure__[flat_inner.__code__.co_freevars.index("c")].cell_contents = value
    elif operation == "attribute":
        top.tag = inner.tag = flat.tag = flat_inner.tag = value
    elif operation == "attribute dict":  # a new __dict__ with the same keys
        flat.__dict__ = {"tag": value}
    elif operation == "annotate":
        flat.__annotations__["x"] = value  # changed in place
    elif operation == "annotations":
        flat.__annotations__ = {"x": value, "return": int}
    elif operation == "annotate with a class":
        flat.__annotations__["d"] = namespace["THING"] if value else THINGS.Thing  # type: ignore[attr-defined]
    elif operation == "rebind the module's class":
        THINGS.Thing = thing_class(value)  # type: ignore[attr-defined]
    elif operation == "restore the module's class":
        THINGS.Thing = ORIGINAL_THING  # type: ignore[attr-defined]
    elif operation == "empty a cell":
        del flat_inner.__closure__[flat_inner.__code__.co_freevars.index("later")].cell_contents
    elif operation == "bind missing":
        namespace["MAYBE"] = value
    elif operation == "unbind missing":
        namespace.pop("MAYBE", None)
    elif operation == "code":
        top.__code__ = variant(namespace, "top_variant", value).__code__
        inner.__code__ = variant(namespace, "make_variant", value).__code__
    elif operation == "helper code":
        namespace["helper"].__code__ = variant(namespace, "helper_variant", value).__code__
    elif operation == "rebind helper":
        namespace["helper"] = variant(namespace, "helper_variant", value)
    elif operation == "redefine":  # the cell run again: new function objects, the globals as they are
        kept = {name: namespace[name] for name in ("K", "helper") if name in namespace}
        exec(CELL, namespace)
        namespace.update(kept)


@settings(max_examples=150, deadline=None)
@given(st.lists(operations, min_size=1, max_size=12))
def test_what_the_worker_runs_is_always_the_current_function(steps: list[tuple[str, Any]]) -> None:
    THINGS.Thing = ORIGINAL_THING  # type: ignore[attr-defined]
    namespace = notebook()
    for operation, value in steps:
        apply(namespace, operation, value)
        for _ in range(3):  # the third look at an unchanged function goes through its compiled check
            for name in FUNCTIONS:
                fn = namespace[name]
                assert outcome(shipped(fn)) == outcome(fn), f"stale {name} after {operation} {value!r}"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.just("global"), values), max_size=4))
def test_an_unchanged_function_is_pickled_once(steps: list[tuple[str, Any]]) -> None:
    namespace = notebook()
    for operation, value in steps:
        apply(namespace, operation, value)
    for name in FUNCTIONS:
        first = xl_serial.function_stream(namespace[name])
        assert first is not None, f"{name} holds only atomic values, functions and named classes: it is cached"
        assert xl_serial.function_stream(namespace[name]) is first


def test_a_function_is_pickled_by_value_once_per_state(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = notebook()
    calls: list[Any] = []
    real = cloudpickle.dumps

    def counting(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        calls.append(obj)
        return real(obj, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(pickling.cloudpickle, "dumps", counting)
    top = namespace["top"]
    streams = {id(xl_serial.function_stream(top)) for _ in range(20)}
    assert len(streams) == 1 and calls == [top]
    namespace["K"] = 2
    assert xl_serial.function_stream(top) is not None and calls == [top, top]


def test_a_function_that_cannot_be_cached_is_pickled_once_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function-learning step must not pickle a __main__ function a second time (it used to, per submit)."""
    namespace = notebook()
    namespace["K"] = [1]  # a list: its contents may change unseen, so no stream is kept
    top = namespace["top"]
    assert xl_serial.function_stream(top) is None
    calls: list[Any] = []
    real = cloudpickle.dumps

    def counting(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        calls.append(obj)
        return real(obj, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(pickling.cloudpickle, "dumps", counting)
    for i in range(5):
        xl_serial.dumps((top, (i,), {}, None))
    assert len(calls) == 5


@pytest.mark.parametrize(
    "global_value",
    [[1], {"a": 1}, {1, 2}, bytearray(b"x"), object(), (1, [2])],
    ids=["list", "dict", "set", "bytearray", "instance", "tuple-holding-a-list"],
)
def test_state_identity_cannot_vouch_for_is_never_cached(global_value: Any) -> None:
    namespace = notebook()
    namespace["K"] = global_value
    assert xl_serial.function_stream(namespace["top"]) is None


def test_a_class_defined_in_main_is_not_vouched_for() -> None:
    namespace = notebook()
    exec("class Point:\n    pass\n", namespace)
    namespace["K"] = namespace["Point"]
    assert xl_serial.function_stream(namespace["top"]) is None


def test_modules_classes_and_builtins_by_name_are_cached() -> None:
    import math

    namespace = notebook()
    exec("from math import sqrt\n", namespace)
    for value in (math, int, ValueError, namespace["sqrt"], (1, "a", frozenset({2})), None):
        namespace["K"] = value
        first = xl_serial.function_stream(namespace["top"])
        assert first is not None, f"{value!r} is pickled by name or cannot change"
        assert xl_serial.function_stream(namespace["top"]) is first
    namespace["K"] = [].append  # a bound method carries its list
    assert xl_serial.function_stream(namespace["top"]) is None


def test_recursive_and_mutually_recursive_functions() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(
        "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
        "def even(n):\n    return True if n == 0 else odd(n - 1)\n"
        "def odd(n):\n    return False if n == 0 else even(n - 1)\n",
        namespace,
    )
    for name, argument, expected in (("fact", 5, 120), ("even", 6, True), ("odd", 6, False)):
        fn = namespace[name]
        stream = xl_serial.function_stream(fn)
        assert stream is not None and xl_serial.function_stream(fn) is stream
        assert xl_serial.resolve_function(stream)(argument) == expected
    namespace["odd"] = lambda n: "rebound"
    assert xl_serial.resolve_function(xl_serial.function_stream(namespace["even"]))(1) == "rebound"


def two_globals() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def pair():\n    return (A_, B_)\n", namespace)
    return namespace


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"A_": "x"}, {"B_": "x"}),  # one bound, then the other, to the same object: an unbound name counts
        ({"A_": "root", "B_": "x"}, {"A_": "x", "B_": "root"}),  # the function itself counts where it appears
    ],
    ids=["unbound-names", "recursion"],
)
def test_states_that_would_flatten_alike_are_told_apart(before: dict[str, str], after: dict[str, str]) -> None:
    namespace = two_globals()
    pair = namespace["pair"]
    shared = "x" * 3  # one object, used in both states

    def bind(state: dict[str, str]) -> None:
        for name in ("A_", "B_"):
            namespace.pop(name, None)
        for name, what in state.items():
            namespace[name] = pair if what == "root" else shared

    bind(before)
    first = xl_serial.function_stream(pair)
    bind(after)
    second = xl_serial.function_stream(pair)
    assert first is not None and second is not None and first != second


def test_a_dict_entry_moving_between_dicts_is_seen() -> None:
    namespace = notebook()
    top = namespace["top"]
    value = ("shared",)
    top.__kwdefaults__ = {"kw": value}
    top.__annotations__ = {}
    first = xl_serial.function_stream(top)
    top.__kwdefaults__ = {}
    top.__annotations__ = {"kw": value}
    second = xl_serial.function_stream(top)
    assert first is not None and second is not None and first != second


def test_a_redefined_function_lets_the_old_one_go() -> None:
    namespace = notebook()
    old = namespace["top"]
    assert xl_serial.function_stream(old) is not None
    key = id(old)
    assert key in pickling._BY_VALUE
    exec(CELL, namespace)
    del old
    gc.collect()
    assert key not in pickling._BY_VALUE or pickling._BY_VALUE[key].ref() is not None


def test_importable_functions_still_travel_by_reference() -> None:
    stream = xl_serial.function_stream(reference_target)
    assert stream == pickle.dumps(reference_target, protocol=5)
    assert xl_serial.resolve_function(stream) is reference_target
    assert xl_serial.function_stream(len) is None, "not a Python function: pickled with the message"


def test_a_module_registered_by_value_drops_the_kept_streams() -> None:
    import sys

    namespace = notebook()
    namespace["K"] = reference_target
    first = xl_serial.function_stream(namespace["top"])
    assert first is not None
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        second = xl_serial.function_stream(namespace["top"])
        assert second is not None and second != first, "reference_target now travels by value inside it"
    finally:
        cloudpickle.unregister_pickle_by_value(module)


# -- the receiving side keeps what it unpickled


def test_the_receiver_keeps_a_function_per_distinct_pickle() -> None:
    namespace = notebook()
    stream = xl_serial.function_stream(namespace["top"])
    assert stream is not None
    kept = xl_serial.resolve_function(bytes(bytearray(stream)))
    assert xl_serial.resolve_function(bytes(bytearray(stream))) is kept, "the same bytes: not unpickled again"
    namespace["K"] = 5
    changed = xl_serial.resolve_function(xl_serial.function_stream(namespace["top"]))
    assert changed is not kept and changed(1)[2] == 5


def test_the_receiver_keeps_a_bounded_number_of_functions() -> None:
    limit = pickling._RESOLVED_LIMIT
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def constant():\n    return C\n", namespace)
    first = None
    for value in range(limit + 10):
        namespace["C"] = value + 1000
        stream = xl_serial.function_stream(namespace["constant"])
        assert stream is not None
        assert xl_serial.resolve_function(stream)() == value + 1000
        first = first or stream
    assert len(pickling._RESOLVED) <= limit
    assert first not in pickling._RESOLVED, "the least recently used went first"


def test_a_function_pickle_over_the_senders_limit_is_pickled_per_message() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__", "BIG": b"x" * (pickling._KEEP_MAX_BYTES + 1)}
    exec("def size():\n    return len(BIG)\n", namespace)
    first = xl_serial.function_stream(namespace["size"])
    second = xl_serial.function_stream(namespace["size"])
    assert first is not None and second is not None and first is not second and first == second


def test_a_large_function_pickle_is_not_kept() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__", "BIG": b"x" * (pickling._RESOLVED_MAX_BYTES + 1)}
    exec("def size():\n    return len(BIG)\n", namespace)
    stream = xl_serial.function_stream(namespace["size"])
    assert stream is not None
    assert xl_serial.resolve_function(stream)() == len(namespace["BIG"])
    assert stream not in pickling._RESOLVED


def reference_target() -> str:
    return "by reference"


def test_a_kept_function_that_changed_itself_is_unpickled_afresh() -> None:
    namespace = notebook()
    stream = xl_serial.function_stream(namespace["top"])
    assert stream is not None
    kept = xl_serial.resolve_function(stream)
    kept.tag = "set on the receiving side"
    fresh = xl_serial.resolve_function(stream)
    assert fresh is not kept and fresh(1)[6] is None, "the state the bytes describe, not the changed copy"
    assert xl_serial.resolve_function(stream) is fresh


def test_a_full_cache_keeps_the_function_whose_walk_fills_it() -> None:
    """With the cache of by-value functions one short of full, a function learnt first and its helper learnt
    during its walk both stay: the second send reuses the first pickle (the cache used to be emptied whole, which
    dropped the function being sent and failed test_an_unchanged_function_is_pickled_once now and then)."""
    fillers = []
    for index in range(pickling._BY_VALUE_LIMIT):
        space: dict[str, Any] = {"__name__": "__main__"}
        exec(f"def filler_{index}():\n    return {index}\n", space)
        fillers.append(space[f"filler_{index}"])
        xl_serial.function_stream(fillers[-1])
    while len(pickling._BY_VALUE) >= pickling._BY_VALUE_LIMIT:  # exactly one short of full
        del pickling._BY_VALUE[next(iter(pickling._BY_VALUE))]
    while len(pickling._BY_VALUE) < pickling._BY_VALUE_LIMIT - 1:
        space = {"__name__": "__main__"}
        exec("def extra():\n    return 0\n", space)
        fillers.append(space["extra"])
        xl_serial.function_stream(fillers[-1])
    namespace = notebook()
    first = xl_serial.function_stream(namespace["top"])  # learns top, then helper during the walk: full
    assert first is not None
    assert xl_serial.function_stream(namespace["top"]) is first
    assert len(pickling._BY_VALUE) <= pickling._BY_VALUE_LIMIT


def test_learning_a_function_inside_learning_one_does_not_hang() -> None:
    """A collection while a function is learnt may run a finalizer that sends another new function: the same
    thread learns again, which must not wait for itself."""
    import threading

    space: dict[str, Any] = {"__name__": "__main__"}
    exec("def fresh():\n    return 1\n", space)
    results: list[Any] = []

    def nested() -> None:
        with pickling._learning:  # as if a finalizer ran while the lock is held
            results.append(xl_serial.function_stream(space["fresh"]))

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "learning a function while the same thread learnt one hung"
    assert results and results[0] is not None

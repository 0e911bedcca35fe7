"""The compiled top-level check says "unchanged" exactly when the listed top level is the same objects."""

from __future__ import annotations

import gc
import types
import weakref
from typing import Any

import xl_serial
from hypothesis import given, settings
from hypothesis import strategies as st
from xl_serial import pickling
from xl_serial.top_level import ROOT, compile_check, top_level

SOURCE = """
def fn(x, d=1, *, kw=2):
    return (x, d, kw, A, B)

def make():
    c = 1
    def inner(x):
        return (x, c, A)
    return inner

inner = make()
fn.tag = "t"
"""


def namespace() -> dict[str, Any]:
    space: dict[str, Any] = {"__name__": "__main__", "A": 1, "B": "b"}
    exec(SOURCE, space)
    return space


def held_of(fn: types.FunctionType) -> list[Any]:
    parts: list[Any] = []
    assert top_level(fn, parts)
    return [ROOT if part is fn else part for part in parts]


def ids_of(fn: types.FunctionType) -> tuple[int, ...]:
    parts: list[Any] = []
    assert top_level(fn, parts)
    return tuple(map(id, parts))


shared = ("shared",)  # one object, so a change back to it restores the identical state
objects = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.just(shared), st.sampled_from([1, True, 1.0]))
changes = st.one_of(
    st.tuples(st.just("global A"), objects),
    st.tuples(st.just("unbind B"), st.none()),
    st.tuples(st.just("global B"), objects),
    st.tuples(st.just("global A is the function"), st.none()),
    st.tuples(st.just("defaults"), objects),
    st.tuples(st.just("kwdefaults"), objects),
    st.tuples(st.just("no kwdefaults"), st.none()),
    st.tuples(st.just("attribute"), objects),
    st.tuples(st.just("drop attributes"), st.none()),
    st.tuples(st.just("rename attributes"), st.none()),
    st.tuples(st.just("annotation"), objects),
    st.tuples(st.just("cell"), objects),
    st.tuples(st.just("empty the cell"), st.none()),
    st.tuples(st.just("doc"), objects),
    st.tuples(st.just("name"), st.sampled_from(["fn", "other"])),
)


def change(space: dict[str, Any], operation: str, value: Any) -> None:
    fn, inner = space["fn"], space["inner"]
    if operation == "global A":
        space["A"] = value
    elif operation == "unbind B":
        space.pop("B", None)
    elif operation == "global B":
        space["B"] = value
    elif operation == "global A is the function":
        space["A"] = fn
    elif operation == "defaults":
        fn.__defaults__ = (value,)
    elif operation == "kwdefaults":
        fn.__kwdefaults__ = {"kw": value}
    elif operation == "no kwdefaults":
        fn.__kwdefaults__ = None
    elif operation == "attribute":
        fn.tag = inner.tag = value
    elif operation == "drop attributes":
        fn.__dict__ = {}
    elif operation == "rename attributes":  # the same values under another key
        fn.__dict__ = {("other" if key == "tag" else "tag"): item for key, item in fn.__dict__.items()}
    elif operation == "annotation":
        fn.__annotations__["x"] = value
    elif operation == "cell":
        inner.__closure__[0].cell_contents = value
    elif operation == "empty the cell":
        del inner.__closure__[0].cell_contents
    elif operation == "doc":
        fn.__doc__ = value if isinstance(value, str) else None
    elif operation == "name":
        fn.__name__ = value


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, max_size=6), st.lists(changes, max_size=6))
def test_the_compiled_check_agrees_with_the_ids(before: list[tuple[str, Any]], after: list[tuple[str, Any]]) -> None:
    space = namespace()
    for operation, value in before:
        change(space, operation, value)
    checks = {}
    ids = {}
    for name in ("fn", "inner"):
        fn = space[name]
        check = compile_check(fn, (), held_of(fn))
        assert check is not None and check(fn), "the state it was compiled from"
        checks[name], ids[name] = check, ids_of(fn)
    for operation, value in after:
        change(space, operation, value)
    for name in ("fn", "inner"):
        fn = space[name]
        assert checks[name](fn) == (ids_of(fn) == ids[name]), f"{name} after {after}"


def test_no_name_or_key_of_the_function_becomes_source() -> None:
    space = namespace()
    fn = space["fn"]
    hostile = "x') or True or print('injected"
    fn.__dict__[hostile] = 1
    fn.__annotations__[hostile + "\n"] = 2
    check = compile_check(fn, (), held_of(fn))
    assert check is not None and check(fn)
    fn.__dict__[hostile] = 3
    assert not check(fn)


def test_a_reused_fingerprint_is_compiled_and_still_sees_a_change() -> None:
    space = namespace()
    fn = space["fn"]
    for _ in range(3):
        stream = xl_serial.function_stream(fn)
    state = pickling._BY_VALUE[id(fn)].cached
    assert state is not None and state[0].check is not None, "reused twice: compiled"
    space["A"] = 2
    changed = xl_serial.function_stream(fn)
    assert changed is not None and changed != stream
    assert xl_serial.resolve_function(changed)(0)[3] == 2


def test_the_receiver_compiles_too_and_unpickles_a_changed_copy_afresh() -> None:
    space = namespace()
    stream = xl_serial.function_stream(space["fn"])
    assert stream is not None
    kept = xl_serial.resolve_function(stream)
    for _ in range(3):
        assert xl_serial.resolve_function(stream) is kept
    assert pickling._RESOLVED[stream][1].check is not None  # type: ignore[union-attr]
    kept.__defaults__ = (99,)  # the receiving side changed its copy
    fresh = xl_serial.resolve_function(stream)
    assert fresh is not kept and fresh(0)[1] == 1


def test_a_compiled_check_does_not_keep_a_recursive_function_alive() -> None:
    space: dict[str, Any] = {"__name__": "__main__"}
    exec("def make():\n    def again(n):\n        return n if n < 1 else again(n - 1)\n    return again\n", space)
    fn = space["make"]()  # its closure cell holds itself
    for _ in range(3):
        assert xl_serial.function_stream(fn) is not None
    state = pickling._BY_VALUE[id(fn)].cached
    assert state is not None and state[0].check is not None
    gone = weakref.ref(fn)
    del fn
    gc.collect()
    assert gone() is None


def test_threads_sending_while_a_global_flips_end_on_the_last_state() -> None:
    """Senders in other threads race a notebook that rebinds a global: each pickle they send holds one of the
    states the global had, and once the flipping stops, the next pickle holds the last one (no stale check
    survives a race between its reads)."""
    import threading

    space = namespace()
    fn = space["fn"]
    streams: set[bytes] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def send() -> None:
        try:
            while not stop.is_set():
                stream = xl_serial.function_stream(fn)
                assert stream is not None
                streams.add(stream)
        except BaseException as problem:  # reported by the main thread
            errors.append(problem)

    senders = [threading.Thread(target=send) for _ in range(3)]
    for sender in senders:
        sender.start()
    try:
        for value in range(2000):
            space["A"] = value % 2
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
    assert not errors, errors
    assert {xl_serial.resolve_function(stream)(0)[3] for stream in streams} <= {0, 1}
    for last in (7, 8):
        space["A"] = last
        stream = xl_serial.function_stream(fn)
        assert stream is not None and xl_serial.resolve_function(stream)(0)[3] == last

"""FutureSelector, split_future, get_item_from_future, find_futures, has_futures and substitute."""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict, namedtuple
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_graph import FutureSelector, find_futures, get_item_from_future, has_futures, split_future, substitute

Point = namedtuple("Point", "x y")


class ListSubclass(list):  # type: ignore[type-arg]
    pass


class Holder:
    """Not a container: a Future kept as an attribute is not looked for."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future


def done_future(result: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(result)
    return future


# ---------------------------------------------------------------------------------------------------------------
# nested structures described by a "shape", built once with futures and once with their results

POOL = 5
RESULTS = [100, "r1", None, (3, 4), 2.5]  # all hashable, so they may stand in sets

hashable_leaves = st.one_of(
    st.integers(-5, 5).map(lambda v: ("value", v)),
    st.text(max_size=3).map(lambda v: ("value", v)),
    st.just(("value", None)),
    st.integers(0, POOL - 1).map(lambda i: ("future", i)),
)
leaves = st.one_of(hashable_leaves, st.binary(max_size=3).map(lambda v: ("value", v)))


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4).map(lambda xs: ("list", xs)),
        st.lists(children, max_size=4).map(lambda xs: ("tuple", xs)),
        st.lists(children, max_size=4).map(lambda xs: ("listsub", xs)),
        st.tuples(children, children).map(lambda xy: ("point", list(xy))),
        st.dictionaries(st.text(max_size=3), children, max_size=4).map(lambda d: ("dict", d)),
        st.dictionaries(st.integers(0, 9), children, max_size=4).map(lambda d: ("ordereddict", d)),
        st.dictionaries(st.text(max_size=2), children, max_size=3).map(lambda d: ("defaultdict", d)),
        st.lists(hashable_leaves, max_size=4).map(lambda xs: ("set", xs)),
        st.lists(hashable_leaves, max_size=4).map(lambda xs: ("frozenset", xs)),
    )


shapes = st.recursive(leaves, containers, max_leaves=25)


def build(shape: Any, leaf: Any) -> Any:
    kind, content = shape
    if kind == "value":
        return content
    if kind == "future":
        return leaf(content)
    if kind in ("dict", "ordereddict", "defaultdict"):
        items = {k: build(v, leaf) for k, v in content.items()}
        if kind == "ordereddict":
            return OrderedDict(items)
        if kind == "defaultdict":
            return defaultdict(list, items)
        return items
    items = [build(child, leaf) for child in content]
    return {
        "list": list,
        "tuple": tuple,
        "listsub": ListSubclass,
        "point": lambda xs: Point(*xs),
        "set": set,
        "frozenset": frozenset,
    }[kind](items)


def assert_same(a: Any, b: Any) -> None:
    """Equal, and of the same type at every level (== alone takes Point(1, 2) for (1, 2))."""
    assert type(a) is type(b), (a, b)
    assert a == b
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
        if isinstance(a, defaultdict):
            assert a.default_factory is b.default_factory
    elif isinstance(a, (list, tuple)):
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)


def reference_futures(obj: Any) -> list[Future[Any]]:
    """A plain recursive walk: every Future in order of appearance, repeats included."""
    if isinstance(obj, Future):
        return [obj]
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in reference_futures(v)]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [f for v in obj for f in reference_futures(v)]
    return []


def unchanged_pairs(original: Any, copy: Any) -> list[tuple[Any, Any]]:
    """(original, copy) of every container in ``original`` that has no Future inside."""
    pairs = []
    if isinstance(original, (list, tuple, dict, set, frozenset)):
        if not reference_futures(original):
            pairs.append((original, copy))
        elif isinstance(original, dict):
            for k in original:
                pairs += unchanged_pairs(original[k], copy[k])
        elif isinstance(original, (list, tuple)):
            for x, y in zip(original, copy, strict=True):
                pairs += unchanged_pairs(x, y)
    return pairs


@given(shapes)
def test_substitute_equals_the_structure_built_from_values(shape: Any) -> None:
    futures = [done_future(r) for r in RESULTS]
    with_futures = build(shape, lambda i: futures[i])
    with_values = build(shape, lambda i: RESULTS[i])
    results = {id(f): f.result() for f in futures}
    substituted = substitute(with_futures, results)
    assert_same(substituted, with_values)
    for original, copy in unchanged_pairs(with_futures, substituted):
        assert copy is original  # no copy where there is nothing to substitute
    assert not has_futures(substituted)


@given(shapes)
def test_find_futures_finds_each_future_once_in_order_of_first_appearance(shape: Any) -> None:
    futures = [Future() for _ in range(POOL)]
    obj = build(shape, lambda i: futures[i])
    expected: list[Future[Any]] = []
    for future in reference_futures(obj):
        if all(future is not seen for seen in expected):
            expected.append(future)
    found = find_futures(obj)
    assert len(found) == len(expected)
    assert all(a is b for a, b in zip(found, expected, strict=True))
    assert has_futures(obj) == bool(expected)


def test_substitute_without_futures_returns_the_same_object() -> None:
    obj = {"a": [1, (2, 3)], "b": {4, 5}}
    assert substitute(obj, {}) is obj
    assert substitute(7, {}) == 7


def test_substitute_keeps_shared_and_unchanged_parts() -> None:
    f = done_future(1)
    shared = [1, 2]
    out = substitute([shared, f, shared, "text"], {id(f): 10})
    assert out == [[1, 2], 10, [1, 2], "text"]
    assert out[0] is shared and out[2] is shared


def test_substitute_missing_result_names_the_future() -> None:
    f: Future[Any] = Future()
    with pytest.raises(KeyError, match="no result given"):
        substitute([f], {})


def test_substitute_a_future_itself() -> None:
    f = done_future(3)
    assert substitute(f, {id(f): 3}) == 3


def test_find_futures_does_not_look_into_strings_or_other_objects() -> None:
    f: Future[Any] = Future()
    assert find_futures(["abc", b"abc", Holder(f), 3]) == []
    assert not has_futures(Holder(f))
    assert find_futures(f) == [f]


def test_find_futures_looks_at_dict_values_not_keys() -> None:
    f, g = Future(), Future()  # type: ignore[var-annotated]
    assert find_futures({f: 1, "x": g}) == [g]


def test_a_container_that_contains_itself_ends() -> None:
    f: Future[Any] = Future()
    cyclic: list[Any] = [f]
    cyclic.append(cyclic)
    assert find_futures(cyclic) == [f]
    assert has_futures(cyclic)
    out = substitute(cyclic, {id(f): 1})
    assert out[0] == 1


def test_find_futures_on_deep_nesting() -> None:
    f: Future[Any] = Future()
    obj: Any = f
    for _ in range(5000):
        obj = [obj]
    assert find_futures(obj) == [f]


def test_subclass_that_cannot_be_rebuilt_falls_back_to_its_base() -> None:
    class Strict(list):  # type: ignore[type-arg]
        def __init__(self, a: Any, b: Any) -> None:
            super().__init__([a, b])

    f = done_future(2)
    out = substitute(Strict(1, f), {id(f): 2})
    assert out == [1, 2]


# ---------------------------------------------------------------------------------------------------------------
# FutureSelector

selectable = st.one_of(
    st.lists(st.integers(), min_size=1, max_size=5).flatmap(
        lambda xs: st.tuples(st.just(xs), st.integers(-len(xs), len(xs) - 1))
    ),
    st.dictionaries(st.text(max_size=4), st.integers(), min_size=1, max_size=5).flatmap(
        lambda d: st.tuples(st.just(d), st.sampled_from(sorted(d)))
    ),
)


@given(selectable, st.booleans())
def test_selector_result_is_the_selected_part(case: tuple[Any, Any], done_before: bool) -> None:
    container, selector = case
    future: Future[Any] = Future()
    if done_before:
        future.set_result(container)
    selected = FutureSelector(future, selector)
    if not done_before:
        assert not selected.done()
        future.set_result(container)
    assert selected.done()
    assert selected.result(timeout=0) == container[selector]
    assert selected.future is future
    assert selected.selector == selector


def test_split_future_and_get_item_from_future() -> None:
    future: Future[Any] = Future()
    parts = split_future(future, 3)
    item = get_item_from_future(future, 1)
    assert [p.selector for p in parts] == [0, 1, 2]
    assert all(isinstance(p, Future) and p.future is future for p in parts)
    future.set_result(("a", "b", "c"))
    assert [p.result() for p in parts] == ["a", "b", "c"]
    assert item.result() == "b"
    named = get_item_from_future(done_future({"energy": -1.5}), "energy")
    assert named.result() == -1.5


@pytest.mark.parametrize("n", [0, -1])
def test_split_future_rejects_n_below_one(n: int) -> None:
    with pytest.raises(ValueError, match=f"n={n}"):
        split_future(Future(), n)


@pytest.mark.parametrize("n", [1.5, "2", True])
def test_split_future_rejects_non_int_n(n: Any) -> None:
    with pytest.raises(TypeError, match="n must be an int"):
        split_future(Future(), n)


@pytest.mark.parametrize("selector", [1.0, None, (1,), True])
def test_selector_type_is_checked(selector: Any) -> None:
    with pytest.raises(TypeError, match="selector must be an int index or a str key"):
        FutureSelector(Future(), selector)


def test_selector_needs_a_future() -> None:
    with pytest.raises(TypeError, match=r"needs a concurrent\.futures\.Future"):
        FutureSelector([1, 2], 0)  # type: ignore[arg-type]


def test_failed_indexing_fails_the_selector_naming_it() -> None:
    short = FutureSelector(done_future((1, 2)), 5)
    error = short.exception(timeout=0)
    assert isinstance(error, IndexError)
    assert "[5]" in str(error) and "tuple" in str(error)
    assert isinstance(error.__cause__, IndexError)
    missing = get_item_from_future(done_future({"a": 1}), "b")
    error = missing.exception(timeout=0)
    assert isinstance(error, KeyError) and "'b'" in str(error)
    wrong_type = get_item_from_future(done_future(5), "a")
    assert isinstance(wrong_type.exception(timeout=0), TypeError)


def test_a_none_result_selects_none_as_in_executorlib() -> None:
    first, second = split_future(done_future(None), 2)
    assert first.result(timeout=0) is None and second.result(timeout=0) is None


def test_an_exception_is_passed_on_unchanged() -> None:
    future: Future[Any] = Future()
    selected = FutureSelector(future, 0)
    error = ZeroDivisionError("boom")
    future.set_exception(error)
    assert selected.exception(timeout=0) is error
    with pytest.raises(ZeroDivisionError, match="boom"):
        selected.result(timeout=0)


def test_cancelling_the_wrapped_future_cancels_the_selector_and_wakes_waiters() -> None:
    future: Future[Any] = Future()
    selected = FutureSelector(future, 0)
    outcome: dict[str, Any] = {}

    def waiter() -> None:
        outcome["wait"] = wait([selected], timeout=10, return_when=FIRST_COMPLETED)

    thread = threading.Thread(target=waiter)
    thread.start()
    assert future.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert selected in outcome["wait"].done
    assert selected.cancelled()
    with pytest.raises(CancelledError):
        selected.result(timeout=0)


def test_a_selector_marked_running_fails_with_cancelled_error() -> None:
    future: Future[Any] = Future()
    selected = FutureSelector(future, 0)
    assert selected.set_running_or_notify_cancel()
    future.cancel()
    assert selected.done() and not selected.cancelled()
    assert isinstance(selected.exception(timeout=0), CancelledError)


def test_cancelling_the_selector_leaves_the_wrapped_future_alone() -> None:
    future: Future[Any] = Future()
    first, second = split_future(future, 2)
    assert first.cancel()
    future.set_result((1, 2))  # must not raise InvalidStateError inside the callback
    assert first.cancelled()
    assert second.result(timeout=0) == 2
    assert future.result(timeout=0) == (1, 2)


def test_selector_of_a_selector() -> None:
    future: Future[Any] = Future()
    inner = get_item_from_future(future, "pair")
    outer = FutureSelector(inner, 1)
    future.set_result({"pair": (7, 8)})
    assert outer.result(timeout=0) == 8


outcomes = st.sampled_from(["result", "bad-index", "exception", "cancel", "cancel-running", "cancel-selector"])


@given(st.lists(st.tuples(outcomes, st.booleans()), min_size=1, max_size=8))
def test_a_selector_is_never_pending_once_the_wrapped_future_is_done(cases: list[tuple[str, bool]]) -> None:
    for outcome, created_before in cases:
        future: Future[Any] = Future()
        selectors: list[FutureSelector] = []

        def make(
            outcome: str = outcome, future: Future[Any] = future, selectors: list[FutureSelector] = selectors
        ) -> None:
            selector = FutureSelector(future, 9 if outcome == "bad-index" else 0)
            if outcome == "cancel-running" and not future.done():
                selector.set_running_or_notify_cancel()
            if outcome == "cancel-selector":
                selector.cancel()
            selectors.append(selector)

        if created_before:
            make()
        if outcome in ("result", "bad-index", "cancel-selector"):
            future.set_result([1])
        elif outcome == "exception":
            future.set_exception(RuntimeError("x"))
        else:
            future.cancel()
        make()
        assert all(selector.done() for selector in selectors)


def test_completion_from_another_thread() -> None:
    future: Future[Any] = Future()
    parts = split_future(future, 100)
    thread = threading.Thread(target=future.set_result, args=(list(range(100)),))
    thread.start()
    assert [p.result(timeout=10) for p in parts] == list(range(100))
    thread.join()


def test_repr_names_the_selector() -> None:
    assert "selector='energy'" in repr(get_item_from_future(Future(), "energy"))

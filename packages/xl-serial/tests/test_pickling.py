from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import numpy as np
import pytest
import xl_serial
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays, scalar_dtypes

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=5), children, max_size=5)
        | st.tuples(children, children)
    ),
    max_leaves=30,
)


@given(json_like)
def test_round_trip_of_plain_values(value: Any) -> None:
    assert xl_serial.loads(xl_serial.dumps(value)) == value


@settings(max_examples=50, deadline=None)
@given(
    arrays(dtype=scalar_dtypes(), shape=array_shapes(max_dims=3, max_side=40)),
    st.sampled_from([0, 1, 1 << 30]),
)
def test_round_trip_of_numpy_arrays(array: np.ndarray, threshold: int) -> None:
    frames = xl_serial.dumps(array, min_out_of_band=threshold)
    back = xl_serial.loads(frames)
    assert back.shape == array.shape
    if array.dtype.kind in "mM":
        # numpy normalises the byte order of datetime buffers when unpickling; the values are what counts.
        assert back.dtype.kind == array.dtype.kind and back.dtype.itemsize == array.dtype.itemsize
    else:
        assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_large_buffer_travels_out_of_band_without_copy() -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    frames = xl_serial.dumps({"x": array})
    assert len(frames) == 2, "the 8 MB buffer must be its own frame"
    assert len(frames[0]) < 1024, "the pickle stream must not contain the array's bytes"
    buffer = frames[1]
    assert isinstance(buffer, pickle.PickleBuffer)
    assert np.shares_memory(np.frombuffer(buffer.raw(), dtype=np.float64), array), "frame is a view, not a copy"
    np.testing.assert_array_equal(xl_serial.loads([bytes(frames[0]), memoryview(buffer)])["x"], array)


def test_small_buffers_stay_in_band() -> None:
    assert len(xl_serial.dumps(np.zeros(4))) == 1


def test_functions_from_main_travel_by_value() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def triple(x):\n    return 3 * x\n", namespace)
    frames = xl_serial.dumps(namespace["triple"])
    assert b"triple" in bytes(frames[0])
    assert xl_serial.loads(frames)(5) == 15


def test_loads_of_nothing_names_the_problem() -> None:
    with pytest.raises(ValueError, match="empty frame list"):
        xl_serial.loads([])


def test_frames_nbytes_counts_every_frame() -> None:
    frames = xl_serial.dumps(np.zeros(100_000))
    assert xl_serial.frames_nbytes(frames) >= 800_000


# -- the plain path: tuples that plain pickle writes exactly as cloudpickle does skip cloudpickle's Python hooks

atomic = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
one_level = atomic | st.lists(atomic, max_size=4) | st.tuples(atomic, atomic) | st.dictionaries(atomic, atomic)


@given(st.lists(one_level, max_size=5).map(tuple))
def test_plain_tuples_take_the_c_pickler_and_mean_the_same(value: tuple[Any, ...]) -> None:
    from xl_serial import pickling

    assert pickling._plain(value)
    frames = xl_serial.dumps(value)
    assert frames == [pickle.dumps(value, protocol=5)]
    assert pickle.loads(frames[0]) == pickle.loads(cloudpickle.dumps(value, protocol=5)) == value


def test_importable_functions_join_the_plain_path_once_cloudpickle_agrees() -> None:
    from xl_serial import pickling

    call = (plain_path_target, (1, 2), {}, None)
    xl_serial.dumps(call)  # cloudpickle decides, and is seen to pickle it by reference
    assert pickling._plain(call)
    assert xl_serial.loads(xl_serial.dumps(call))[0] is plain_path_target


def test_lambdas_and_main_functions_never_take_the_plain_path() -> None:
    from xl_serial import pickling

    def closure() -> int:
        return 1

    for fn in (lambda: 1, closure):
        call = (fn, (), {}, None)
        xl_serial.dumps(call)
        assert not pickling._plain(call)


def test_a_rebound_or_newly_registered_function_leaves_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from xl_serial import pickling

    module = sys.modules[__name__]
    call = (plain_path_target, (), {}, None)
    xl_serial.dumps(call)
    assert pickling._plain(call)
    with monkeypatch.context() as patch:  # the module's name now means another function: cloudpickle decides
        patch.setattr(module, "plain_path_target", lambda: 0)
        assert not pickling._plain(call)
    assert pickling._plain(call)
    cloudpickle.register_pickle_by_value(module)  # directly, bypassing xl_serial.register_by_value
    try:
        assert not pickling._plain(call)
        assert xl_serial.dumps(call)[0] != pickle.dumps(call, protocol=5), "shipped by value now"
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def plain_path_target(*args: Any) -> int:
    return len(args)


# -- function references: a function known to travel by reference is sent as the bytes of that reference


def test_a_learnt_function_has_a_reference_that_resolves_to_it() -> None:
    xl_serial.dumps((reference_target,))  # learnt
    reference = xl_serial.function_reference(reference_target)
    assert reference == pickle.dumps(reference_target, protocol=5) == cloudpickle.dumps(reference_target, protocol=5)
    assert xl_serial.resolve_reference(reference) is reference_target
    assert xl_serial.resolve_reference(reference) is reference_target, "remembered, and still the same"


def test_no_reference_for_what_does_not_travel_by_reference() -> None:
    def closure() -> int:
        return 1

    for fn in (lambda: 1, closure, len, print, np.sum, "not a function", None):
        xl_serial.dumps((fn,))
        assert xl_serial.function_reference(fn) is None


def test_a_rebound_name_resolves_to_its_new_function(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    xl_serial.dumps((reference_target,))
    reference = xl_serial.function_reference(reference_target)
    assert reference is not None and xl_serial.resolve_reference(reference) is reference_target

    def replacement() -> str:
        return "new"

    replacement.__qualname__ = "reference_target"
    monkeypatch.setattr(sys.modules[__name__], "reference_target", replacement)
    assert xl_serial.function_reference(replacement) is None, "never seen by cloudpickle"
    assert xl_serial.resolve_reference(reference) is replacement, "the name decides, as unpickling it would"


def test_a_module_registered_by_value_drops_its_references() -> None:
    import sys

    module = sys.modules[__name__]
    xl_serial.dumps((reference_target,))
    assert xl_serial.function_reference(reference_target) is not None
    cloudpickle.register_pickle_by_value(module)
    try:
        assert xl_serial.function_reference(reference_target) is None
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def reference_target() -> str:
    return "old"

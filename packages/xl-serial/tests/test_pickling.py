from __future__ import annotations

import pickle
from typing import Any

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

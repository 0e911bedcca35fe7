"""Files without our stamp, laid out as executorlib 1.x writes them (format 0), and the pure helpers reading them.

tests/compat/test_cache_interop.py checks the same against files the released 1.11.0 writes; these run with
xl-cache alone.
"""

from __future__ import annotations

import os
import pickle
import types
from pathlib import Path
from typing import Any

import cloudpickle
import h5py
import numpy as np
import pytest
import xl_cache
from hypothesis import given
from hypothesis import strategies as st
from xl_cache.legacy import function_name, plain_value

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.tuples(c, c) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=8,
)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(lambda n: not n.startswith("__"))


@given(value=plain)
def test_plain_values_read_back(value: Any) -> None:
    assert plain_value(cloudpickle.dumps(value)) == value


@given(value=plain)
def test_anything_that_imports_is_refused(value: Any) -> None:
    with pytest.raises(pickle.UnpicklingError, match="names"):
        plain_value(cloudpickle.dumps((value, os.getcwd)))


@given(name=names)
def test_the_name_of_a_function_pickled_by_value(name: str) -> None:
    # a module nobody can import: cloudpickle ships the function by value, as it does for a script's __main__
    namespace: dict[str, Any] = {"__name__": "xl_no_such_module"}
    exec(f"def {name}(x):\n    return x\n", namespace)
    fn = namespace[name]
    assert isinstance(fn, types.FunctionType)
    assert function_name(cloudpickle.dumps(fn)) == name


def test_the_name_of_a_function_pickled_by_reference() -> None:
    assert function_name(cloudpickle.dumps(os.path.join)) == "join"
    assert function_name(cloudpickle.dumps(len)) == "len"
    assert function_name(b"not a pickle") == ""


def dump_like_1x(path: Path, **values: Any) -> None:
    """Each value as its cloudpickle in a gzip'd 1-D uint8 dataset, no stamp (executorlib 1.x's layout)."""
    with h5py.File(path, "a") as f:
        for name, value in values.items():
            f.create_dataset(name, data=np.frombuffer(cloudpickle.dumps(value), dtype=np.uint8), compression="gzip")


def test_a_1x_output_is_an_entry_of_format_0(tmp_path: Path) -> None:
    dump_like_1x(tmp_path / "k_o.h5", function=divmod, input_args=(7, 2), input_kwargs={}, resource_dict={})
    dump_like_1x(tmp_path / "k_o.h5", output=(3, 1), runtime=0.5, queue_id=12)
    entry = xl_cache.read_entry(tmp_path / "k_o.h5")
    seen = (entry.key, entry.status, entry.function_name, entry.runtime, entry.queue_id)
    assert seen == ("k", "done", "divmod", 0.5, 12)
    assert entry.meta.stamp.format == 0
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.result() == (3, 1) and outcome.runtime == 0.5
    [record] = xl_cache.get_cache_data(tmp_path)
    assert record["output"] == (3, 1) and record["input_args"] == (7, 2) and record["runtime"] == 0.5


def test_a_1x_error_raises_its_exception(tmp_path: Path) -> None:
    dump_like_1x(tmp_path / "e_o.h5", function=int, input_args=("x",), error=ValueError("bad x"), runtime=0.1)
    with pytest.raises(ValueError, match="bad x"):
        xl_cache.get_future_from_cache(tmp_path, "e").result(timeout=0)
    assert xl_cache.read_entry(tmp_path / "e_o.h5").status == "error"


def test_an_unfinished_1x_output_is_no_result(tmp_path: Path) -> None:
    # 1.x's interactive executors write <key>_o.h5 in place: a crash can leave one without output
    dump_like_1x(tmp_path / "u_o.h5", function=len, input_args=([],))
    with pytest.raises(xl_cache.CacheCorruptError, match="neither an output nor an error"):
        xl_cache.load_result(tmp_path, "u")


class _Touch:
    """Unpickling this creates a file: a stand-in for a pickle that runs code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_a_small_value_that_would_run_code_is_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Touch(marker))
    pickle.loads(payload)
    assert marker.exists()  # the payload does run code when loaded unrestricted
    marker.unlink()
    dump_like_1x(tmp_path / "x_o.h5", function=len, output=0)
    with h5py.File(tmp_path / "x_o.h5", "a") as f:
        f["runtime"] = np.frombuffer(payload, dtype=np.uint8)
    [found] = xl_cache.scan(tmp_path)
    assert isinstance(found, xl_cache.DamagedFile) and "names pathlib" in str(found.problem)
    assert not marker.exists()


def test_a_stampless_file_that_is_not_1x_is_damaged(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "z_o.h5", "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(xl_cache.CacheCorruptError, match=r"neither an xl-cache stamp nor executorlib 1\.x"):
        xl_cache.read_entry(tmp_path / "z_o.h5")

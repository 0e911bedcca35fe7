"""Real HDF5 files: round trips, permissions, damaged and foreign files, lookups, listing."""

from __future__ import annotations

import operator
import os
import stat
import warnings
import zlib
from pathlib import Path
from typing import Any

import cloudpickle
import h5py
import pytest
import xl_cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xl_cache.h5image import build_image
from xl_cache.layout import Meta, Stamp, encode_meta
from xl_cache.store import atomic_write, current_stamp, pack

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.tuples(c, c) | st.dictionaries(st.text(max_size=4), c, max_size=4),
    max_leaves=10,
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(output=values, args=st.lists(values, max_size=3))
def test_an_output_round_trips(tmp_path: Path, output: Any, args: list[Any]) -> None:
    xl_cache.write_output(tmp_path, "k", operator.add, args, {"x": 1}, output=output, runtime=0.25)
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.status == "done"
    assert outcome.value == output and outcome.result() == output and outcome.runtime == 0.25
    [entry] = xl_cache.list_entries(tmp_path)
    assert entry.input_args == tuple(args) and entry.input_kwargs == {"x": 1} and entry.function is operator.add


def test_the_files_are_plain_hdf5_with_the_upstream_datasets(tmp_path: Path) -> None:
    xl_cache.write_input(tmp_path, "p", divmod, (7, 2), resource_dict={"cores": 1}, error_log_file="e.txt")
    xl_cache.record_queue_id(tmp_path, "p", 4242)
    with h5py.File(tmp_path / "p_i.h5", "r") as f:
        assert set(f) == {"function", "input_args", "input_kwargs", "resource_dict", "queue_id", "error_log_file"}
        # every dataset is a cloudpickle in a 1-D uint8 dataset, as executorlib 1.x reads them
        assert all(f[name].dtype == "uint8" and f[name].ndim == 1 for name in f)
        assert cloudpickle.loads(f["queue_id"][()].tobytes()) == 4242
        assert cloudpickle.loads(f["error_log_file"][()].tobytes()) == "e.txt"
        assert b'"format": 1' in f.attrs["xl_cache"]
    xl_cache.write_output(tmp_path, "o", divmod, (7, 2), output=(3, 1), runtime=1.5, queue_id=4242)
    with h5py.File(tmp_path / "o_o.h5", "r") as f:
        assert {"output", "runtime", "queue_id"} <= set(f) and "error" not in f
        assert cloudpickle.loads(f["runtime"][()].tobytes()) == 1.5
        assert cloudpickle.loads(f["output"][()].tobytes()) == (3, 1)
    xl_cache.write_output(tmp_path, "e", divmod, (7, 0), error=ZeroDivisionError("by zero"))
    with h5py.File(tmp_path / "e_o.h5", "r") as f:
        stored = cloudpickle.loads(f["error"][()].tobytes())  # the bare exception, no xl-serial wrapper
        assert type(stored) is ZeroDivisionError and stored.args == ("by zero",)
    with pytest.raises(ZeroDivisionError) as raised:
        xl_cache.load_result(tmp_path, "e").result()  # type: ignore[union-attr]
    assert "Traceback from" in str(raised.value.__cause__)  # the remote traceback is kept beside it


def test_created_directories_are_private_and_files_too(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "cache"
    old = os.umask(0o000)  # even a permissive umask gives private directories
    try:
        path = xl_cache.write_output(target, "k", len, ([],), output=0)
    finally:
        os.umask(old)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    xl_cache.write_output(shared, "k", len, ([],), output=0)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750


def test_a_missing_key_is_none_and_lookup_never_lists_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xl_cache.write_output(tmp_path, "k", len, ([],), output=0)

    def forbidden(*args: Any) -> Any:
        raise AssertionError("a lookup must not list the directory")

    monkeypatch.setattr(os, "scandir", forbidden)
    monkeypatch.setattr(os, "listdir", forbidden)
    assert xl_cache.load_result(tmp_path, "other") is None
    assert xl_cache.load_result(tmp_path / "nowhere", "k") is None
    assert xl_cache.load_result(tmp_path, "k") is not None


def _damage(path: str, how: str) -> None:
    data = bytearray(Path(path).read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = bytearray()
    elif how == "garbage":
        data = bytearray(b"not an hdf5 file at all" * 10)
    else:  # flip bytes inside the pickled output (found by its content)
        at = data.find(b"precious-output-value")
        data[at : at + 8] = b"XXXXXXXX"
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "empty", "garbage", "flip"])
def test_damaged_files_are_reported_not_returned(tmp_path: Path, how: str) -> None:
    path = xl_cache.write_output(tmp_path, "k", len, ([],), output="precious-output-value")
    _damage(path, how)
    with pytest.raises(xl_cache.CacheCorruptError, match=str(path)):
        xl_cache.load_result(tmp_path, "k")
    with pytest.raises(xl_cache.CacheCorruptError):
        xl_cache.get_future_from_cache(tmp_path, "k")
    with pytest.warns(xl_cache.CacheWarning, match="k_o.h5"):
        assert xl_cache.get_cache_data(tmp_path) == []
    [found] = xl_cache.scan(tmp_path)
    assert isinstance(found, xl_cache.DamagedFile) or how == "flip"


def test_a_renamed_file_is_not_another_keys_result(tmp_path: Path) -> None:
    path = xl_cache.write_output(tmp_path, "a", len, ([],), output=1)
    os.rename(path, tmp_path / "b_o.h5")
    with pytest.raises(xl_cache.CacheCorruptError, match="'a'"):
        xl_cache.load_result(tmp_path, "b")


def _foreign_file(path: Path, stamp: Stamp) -> None:
    """A file as another environment would write it (its pickles are ours, only the stamp differs)."""
    data = pack(41)
    meta = Meta(stamp, "k", "len", 0.0, "done", checksums={"output": zlib.crc32(data)})
    atomic_write(str(path), build_image(encode_meta(meta), {"output": data}))


@pytest.mark.parametrize("which", ["python", "cloudpickle", "format"])
def test_a_file_from_other_versions_names_both(tmp_path: Path, which: str) -> None:
    running = current_stamp()
    stamp, theirs, ours = {
        "python": (Stamp(1, "2.7.18", running.cloudpickle), "Python 2.7.18", f"Python {running.python}"),
        "cloudpickle": (Stamp(1, running.python, "0.5.0"), "cloudpickle 0.5.0", f"cloudpickle {running.cloudpickle}"),
        "format": (Stamp(7, running.python, running.cloudpickle), "format 7", "format 1"),
    }[which]
    _foreign_file(tmp_path / "k_o.h5", stamp)
    with pytest.raises(xl_cache.CacheVersionError) as caught:
        xl_cache.load_result(tmp_path, "k")
    message = str(caught.value)
    assert theirs in message and ours in message and str(tmp_path / "k_o.h5") in message
    [entry] = xl_cache.list_entries(tmp_path)  # listing still shows it, with its versions
    assert entry.meta.stamp == stamp
    with pytest.raises(xl_cache.CacheVersionError):
        entry.output  # noqa: B018


def test_a_patch_release_still_reads(tmp_path: Path) -> None:
    running = current_stamp()
    major, minor, _ = [*running.python.split("."), "0"][:3]
    _foreign_file(tmp_path / "k_o.h5", Stamp(1, f"{major}.{minor}.99", running.cloudpickle))
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.value == 41


def test_future_from_cache_done_failed_pending_missing(tmp_path: Path) -> None:
    xl_cache.write_output(tmp_path, "ok", operator.add, (1, 2), output=3)
    assert xl_cache.get_future_from_cache(tmp_path, "ok").result(timeout=0) == 3
    try:
        int("x")
    except ValueError as error:
        xl_cache.write_output(tmp_path, "bad", int, ("x",), error=error)
    with pytest.raises(ValueError, match="invalid literal") as raised:  # 1.x raises the stored exception
        xl_cache.get_future_from_cache(tmp_path, "bad")
    assert "Traceback" in str(raised.value.__cause__)
    outcome = xl_cache.load_result(tmp_path, "bad")  # the failed-Future form
    assert outcome is not None and isinstance(outcome.to_future().exception(timeout=0), ValueError)
    xl_cache.write_input(tmp_path, "wait", operator.add, (1, 2))
    pending = xl_cache.get_future_from_cache(tmp_path, "wait")  # queued or running: a Future not done yet
    assert not pending.done() and not pending.cancelled()
    with pytest.raises(FileNotFoundError, match="nothing"):
        xl_cache.get_future_from_cache(tmp_path, "nothing")


def test_listing_reads_no_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is in the dev group; the isolation run installs it too")
    xl_cache.write_output(tmp_path, "a", len, ([1],), output=1, runtime=0.5)
    xl_cache.write_input(tmp_path / "sub", "b", len, ([],), queue_id=7)
    try:
        int("x")
    except ValueError as error:
        xl_cache.write_output(tmp_path, "c", int, ("x",), error=error)

    def no_unpickling(data: bytes) -> Any:
        raise AssertionError("listing must not unpickle")

    monkeypatch.setattr("xl_cache.store.unpack", no_unpickling)
    monkeypatch.setattr("xl_cache.entries.unpack_from", no_unpickling)
    entries = {e.key: e for e in xl_cache.list_entries(tmp_path)}
    assert {k: e.status for k, e in entries.items()} == {"a": "done", "b": "pending", "c": "error"}
    assert entries["b"].queue_id == 7 and entries["a"].runtime == 0.5
    assert entries["c"].error_summary is not None and entries["c"].error_summary.startswith("ValueError")
    frame = xl_cache.to_dataframe(tmp_path)
    assert isinstance(frame, pd.DataFrame)
    assert sorted(frame["cache_key"]) == ["a", "b", "c"]
    assert set(frame.columns) >= {"status", "function", "runtime", "queue_id", "error", "filename", "created"}
    monkeypatch.undo()
    with_outputs = xl_cache.to_dataframe(tmp_path, outputs=True).set_index("cache_key")
    assert with_outputs.loc["a", "output"] == 1


def test_get_cache_data_has_the_upstream_keys(tmp_path: Path) -> None:
    xl_cache.write_output(tmp_path, "a", operator.add, (1, 2), output=3, runtime=0.1, error_log_file="e.txt")
    xl_cache.write_input(tmp_path, "b", operator.add, (1,), {"b": 2}, resource_dict={"cores": 2}, queue_id=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = {r["cache_key"]: r for r in xl_cache.get_cache_data(tmp_path)}
    done, pending = records["a"], records["b"]
    assert set(done) == {
        "function",
        "input_args",
        "input_kwargs",
        "resource_dict",
        "output",
        "runtime",
        "error_log_file",
        "filename",
        "cache_key",
        "status",
    }
    assert done["output"] == 3 and done["function"] is operator.add and done["filename"] == str(tmp_path / "a_o.h5")
    assert pending["queue_id"] == 9 and pending["resource_dict"] == {"cores": 2} and "output" not in pending
    assert pending["status"] == "pending" and pending["input_kwargs"] == {"b": 2}


def test_a_key_with_both_files_is_listed_once_by_its_output(tmp_path: Path) -> None:
    xl_cache.write_input(tmp_path, "k", len, ([],))
    xl_cache.write_output(tmp_path, "k", len, ([],), output=0)
    (tmp_path / "notes.txt").write_text("not an entry")
    [entry] = xl_cache.list_entries(tmp_path)
    assert entry.status == "done"
    assert xl_cache.remove(tmp_path, "k") == [str(tmp_path / "k_o.h5"), str(tmp_path / "k_i.h5")]
    assert list(xl_cache.list_entries(tmp_path)) == []


def test_an_unpicklable_output_raises_at_write_and_leaves_nothing(tmp_path: Path) -> None:
    import threading

    with pytest.raises(TypeError):
        xl_cache.write_output(tmp_path, "k", len, ([],), output=threading.Lock())
    assert os.listdir(tmp_path) == []


def test_to_dataframe_without_pandas_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"xl-cache\[pandas\]"):
        xl_cache.to_dataframe(tmp_path)

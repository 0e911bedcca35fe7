"""The index in a cache file's HDF5 user block: it reads the same bytes as HDF5 does, and a file whose index does
not check out is read through HDF5 instead."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cloudpickle
import h5py
import pytest
import xl_cache
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from xl_cache import h5image
from xl_cache.h5image import INDEX_MAGIC, MAX_INDEX_BLOCK, H5Reader, IndexedReader, build_file, build_image
from xl_cache.store import open_file, pack, write_file

names = st.text(st.characters(blacklist_characters="/.\0", blacklist_categories=("Cs",)), min_size=1, max_size=12)
datasets = st.dictionaries(names, st.binary(max_size=3000), max_size=6)
stamps = st.binary(min_size=1, max_size=5000).map(lambda raw: raw.replace(b"\0", b"."))


def _write(path: Path, meta: bytes, data: dict[str, bytes]) -> None:
    block, image = build_file(meta, data)
    path.write_bytes(block + image)
    path.chmod(0o600)


def _indexed(path: Path) -> IndexedReader | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return IndexedReader.open(str(path), fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(meta=stamps, data=datasets)
def test_the_index_reads_what_hdf5_reads(tmp_path: Path, meta: bytes, data: dict[str, bytes]) -> None:
    path = tmp_path / "k_o.h5"
    _write(path, meta, data)
    indexed = _indexed(path)
    assert indexed is not None
    with indexed, H5Reader(path) as hdf5:
        assert indexed.meta() == hdf5.meta() == meta
        assert sorted(indexed.names()) == sorted(hdf5.names()) == sorted(data)
        for name, value in data.items():
            assert indexed.read_bytes(name) == hdf5.read_bytes(name) == value
    with h5py.File(path, "r") as f:  # an ordinary HDF5 file, as executorlib 1.x and users read it
        assert {name: f[name][()].tobytes() for name in f} == data


def test_every_write_gets_an_index_and_lookups_use_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = xl_cache.write_output(tmp_path, "k", len, ([1, 2],), output={"a": 1}, runtime=0.5)
    assert Path(path).read_bytes().startswith(INDEX_MAGIC)

    def no_hdf5(*args: object, **kwargs: object) -> None:
        raise AssertionError("an indexed file was read through HDF5")

    monkeypatch.setattr(H5Reader, "__init__", no_hdf5)
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.value == {"a": 1} and outcome.runtime == 0.5
    [entry] = xl_cache.list_entries(tmp_path)
    assert entry.function_name == "len" and entry.load("input_args") == ([1, 2],)


def _replace(path: Path, offset: int, new: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(new)] = new
    path.write_bytes(bytes(data))


HEADER = struct.Struct("<8sIIIQ")  # magic, stamp length, index length, CRC, file size


def _header(path: Path) -> tuple[bytes, int, int, int, int]:
    fields: tuple[bytes, int, int, int, int] = HEADER.unpack_from(path.read_bytes())
    return fields


@pytest.mark.parametrize("how", ["crc", "size", "outside", "magic"])
def test_an_index_that_does_not_check_out_leaves_the_file_to_hdf5(tmp_path: Path, how: str) -> None:
    path = xl_cache.write_output(tmp_path, "k", len, ([],), output="precious")
    file = Path(path)
    _, meta_size, index_size, crc, size = _header(file)
    if how == "crc":
        _replace(file, 16, struct.pack("<I", crc ^ 1))
    elif how == "size":  # as HDF5 tools leave a file they added to
        _replace(file, 20, struct.pack("<Q", size + 1))
    elif how == "outside":  # an entry pointing past the end, with a CRC that matches it
        raw = file.read_bytes()
        body = raw[HEADER.size : HEADER.size + meta_size + index_size]
        assert body.endswith(b"]}")
        body = body.replace(b'"output":[', b'"output":[9', 1)
        _replace(file, 0, HEADER.pack(INDEX_MAGIC, meta_size, len(body) - meta_size, zlib.crc32(body), size) + body)
    else:
        _replace(file, 0, b"\0")
    assert _indexed(file) is None
    reader = open_file(path)
    with reader:
        assert isinstance(reader, H5Reader)
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.value == "precious"


def test_a_changed_dataset_is_caught_by_its_checksum_on_the_indexed_path(tmp_path: Path) -> None:
    path = Path(xl_cache.write_output(tmp_path, "k", len, ([],), output="precious-output-value"))
    at = path.read_bytes().find(b"precious-output-value")
    _replace(path, at, b"XXXXXXXX")
    assert _indexed(path) is not None
    with pytest.raises(xl_cache.CacheCorruptError, match="checksum"):
        xl_cache.load_result(tmp_path, "k")


def test_a_file_changed_with_h5py_is_read_as_hdf5_sees_it(tmp_path: Path) -> None:
    path = xl_cache.write_output(tmp_path, "k", len, ([],), output=1)
    with h5py.File(path, "a") as f:
        f["note"] = b"added by hand"
    [entry] = xl_cache.list_entries(tmp_path)  # listed all the same
    assert entry.key == "k" and entry.status == "done"
    with open_file(path) as reader:
        assert isinstance(reader, H5Reader) and "note" in reader.names()
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.value == 1


def test_a_stamp_too_large_for_an_index_gets_none() -> None:
    block, image = build_file(b"x" * MAX_INDEX_BLOCK, {"output": b"1"})
    assert block == b"" and build_image(b"x" * MAX_INDEX_BLOCK, {"output": b"1"}) == image
    block, _ = build_file(b"meta", {"runtime": 0.5})  # a scalar dataset has no bytes to point at
    assert block == b""


def test_a_large_dataset_is_read_whole(tmp_path: Path) -> None:
    value = os.urandom(3 << 20)
    path = tmp_path / "big_o.h5"
    _write(path, b"meta", {"output": value, "empty": b""})
    indexed = _indexed(path)
    assert indexed is not None
    with indexed:
        assert indexed.read_bytes("output") == value and indexed.read_bytes("empty") == b""
    with pytest.raises(ValueError, match="closed"):
        indexed.read_bytes("output")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(meta=stamps, first=datasets, data=st.data())
def test_a_file_built_from_its_shapes_template_is_the_file_hdf5_builds(
    tmp_path: Path, meta: bytes, first: dict[str, bytes], data: st.DataObject
) -> None:
    other_meta = data.draw(st.binary(min_size=len(meta), max_size=len(meta))).replace(b"\0", b"-")
    other = {name: data.draw(st.binary(min_size=len(value), max_size=len(value))) for name, value in first.items()}
    h5image._templates.clear()
    build_file(meta, first)  # learns the shape
    assume(len(h5image._templates) == 1)  # not when the stamp also occurs elsewhere in the image (a short one)
    block, image = build_file(other_meta, other)
    assert image == h5image._hdf5_image(other_meta, other, len(block))[0]
    path = tmp_path / "k_o.h5"
    path.write_bytes(block + image)
    with H5Reader(path) as hdf5:
        assert hdf5.meta() == other_meta and {name: hdf5.read_bytes(name) for name in hdf5.names()} == other


def test_tasks_of_one_function_reuse_a_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h5image._templates.clear()

    def write(key: str, argument: int) -> str:
        path = str(tmp_path / f"{key}_i.h5")
        inputs = {"function": pack(len), "input_args": pack(([argument],)), "input_kwargs": pack({})}
        write_file(path, key=key, function="len", status="pending", pickled=inputs, created=1.5)
        return path

    write("a" * 32, 1)
    assert len(h5image._templates) == 1

    def no_hdf5(*args: object) -> None:
        raise AssertionError("a file of a known shape was built by HDF5")

    monkeypatch.setattr(h5image, "_hdf5_image", no_hdf5)
    for key, argument in (("b" * 32, 2), ("c" * 32, 3)):
        path = write(key, argument)
        with h5py.File(path, "r") as f:
            assert cloudpickle.loads(f["input_args"][()].tobytes()) == ([argument],)
        [entry] = [e for e in xl_cache.list_entries(tmp_path) if e.key == key]
        assert entry.load("input_args") == ([argument],) and entry.status == "pending"

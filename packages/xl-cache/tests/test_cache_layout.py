"""The pure rules: file names, the metadata stamp, version compatibility, durations, gc selection, tables."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_cache.cli import Candidate, select_garbage, table
from xl_cache.layout import (
    Meta,
    Stamp,
    check_key,
    decode_meta,
    encode_meta,
    incompatibility,
    input_name,
    is_temp_name,
    key_of,
    output_name,
    parse_duration,
    parse_name,
    temp_name,
)

keys = st.text(st.characters(blacklist_characters="/\\\0", blacklist_categories=("Cs",)), min_size=1).filter(
    lambda k: k not in (".", "..") and ".tmp-" not in k
)


@given(keys)
def test_names_parse_back_to_their_key(key: str) -> None:
    assert parse_name(input_name(key)) == (key, "input")
    assert parse_name(output_name(key)) == (key, "output")
    assert key_of(output_name(key)) == key_of(key) == key


@given(keys, st.from_regex(r"\A[A-Za-z0-9_.-]{1,20}\Z"), st.text("0123456789abcdef.", min_size=1, max_size=8))
def test_temporary_names_are_never_entries(key: str, host: str, number: str) -> None:
    for name in (input_name(key), output_name(key)):
        temporary = temp_name(name, host, number)
        assert parse_name(temporary) is None
        assert is_temp_name(temporary)
        assert not is_temp_name(name)


def test_temporary_names_keep_their_on_disk_format() -> None:
    # Writers of other versions and other hosts share a cache directory: they must agree on these bytes.
    assert temp_name("k_o.h5", "node-1", "0") == "k_o.h5.tmp-node-1-0"
    assert temp_name("k_i.h5", "n", "123.ab12cd34") == "k_i.h5.tmp-n-123.ab12cd34"


@pytest.mark.parametrize(
    "bad", ["", "..", ".", "x\0y", "k.tmp-1-2", "a\\b", "/abs", "a/../b", "../a", "a/", "a//b", "./a", "a/."]
)
def test_keys_that_cannot_name_a_file_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match=r"cache key|non-empty"):
        check_key(bad)


@given(st.lists(keys, min_size=1, max_size=4))
def test_a_key_with_sub_folders_stays_inside_the_cache_directory(parts: list[str]) -> None:
    key = "/".join(parts)
    assert check_key(key) == key
    root = "/cache/root"
    path = os.path.normpath(os.path.join(root, output_name(key)))
    assert path.startswith(root + "/") and path == os.path.join(root, output_name(key))
    assert key_of(output_name(key)) == key and key_of(key) == key


@given(st.lists(keys | st.sampled_from(["", ".", ".."]), min_size=1, max_size=4))
def test_every_key_that_could_escape_is_rejected(parts: list[str]) -> None:
    key = "/".join(parts)
    root = "/cache/root"
    try:
        check_key(key)
    except ValueError:
        return
    assert os.path.normpath(os.path.join(root, key)).startswith(root + "/")


@pytest.mark.parametrize("name", ["x.h5", "_o.h5", "_i.h5", "k_o.h5.bak", "k_r.h5", "notes.txt"])
def test_other_files_are_not_entries(name: str) -> None:
    assert parse_name(name) is None


versions = st.from_regex(r"\A[0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,2})?\Z")
metas = st.builds(
    Meta,
    stamp=st.builds(Stamp, st.integers(0, 5), versions, versions),
    key=keys,
    function=st.text(max_size=20),
    created=st.floats(min_value=0, max_value=4e9),
    status=st.sampled_from(["pending", "done", "error"]),
    runtime=st.none() | st.floats(min_value=0, max_value=1e6),
    queue_id=st.none() | st.integers(min_value=0, max_value=2**62),
    error_log_file=st.none() | st.text(max_size=20),
    error=st.none() | st.text(max_size=40),
    checksums=st.dictionaries(st.sampled_from(["function", "output", "error"]), st.integers(0, 2**32 - 1)),
)


@given(metas)
def test_the_stamp_round_trips(meta: Meta) -> None:
    assert decode_meta(encode_meta(meta)) == meta


@pytest.mark.parametrize(
    "raw",
    [b"", b"[]", b"{}", b'{"status": "lost"}', b"\xff\xfe", b'{"status": "done", "checksums": {"a": "b"}}'],
)
def test_a_broken_stamp_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_meta(raw)


def test_compatibility_ignores_patch_releases_and_names_both_versions() -> None:
    running = Stamp(1, "3.11.7", "3.1.2")
    assert incompatibility(Stamp(1, "3.11.2", "3.1.0"), running) is None
    python = incompatibility(Stamp(1, "3.12.1", "3.1.2"), running)
    assert python is not None and "3.12.1" in python and "3.11.7" in python
    pickle = incompatibility(Stamp(1, "3.11.7", "2.2.1"), running)
    assert pickle is not None and "2.2.1" in pickle and "3.1.2" in pickle
    fmt = incompatibility(Stamp(2, "3.11.7", "3.1.2"), running)
    assert fmt is not None and "format 2" in fmt


@given(st.integers(0, 10**6), st.sampled_from(["", "s", "m", "h", "d", "w"]))
def test_durations(amount: int, unit: str) -> None:
    seconds = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_duration(f"{amount}{unit}") == amount * seconds


@pytest.mark.parametrize("bad", ["", "d", "30x", "-1d", "1 day"])
def test_bad_durations_say_how_to_write_one(bad: str) -> None:
    with pytest.raises(ValueError, match="30d"):
        parse_duration(bad)


candidates = st.builds(
    Candidate,
    path=st.text(min_size=1, max_size=5),
    status=st.sampled_from(["pending", "done", "error", "damaged", "temporary"]),
    mtime=st.floats(0, 1000),
    size=st.integers(0, 10**6),
)


@given(st.lists(candidates), st.floats(0, 2000), st.booleans())
def test_gc_selects_exactly_the_old_files_and_keeps_pending_ones_unless_asked(
    found: list[Candidate], older_than: float, pending: bool
) -> None:
    chosen = select_garbage(found, now=1000.0, older_than=older_than, pending=pending)
    for candidate in found:
        expected = candidate.mtime < 1000.0 - older_than and (pending or candidate.status != "pending")
        assert (candidate in chosen) == expected


def test_table_aligns_columns_and_shows_missing_values() -> None:
    text = table(
        [{"key": "k1", "status": "done", "runtime": 0.5, "size": 2300}, {"key": "longer-key", "status": "pending"}],
        ("key", "status", "runtime", "size"),
    )
    lines = text.splitlines()
    assert lines[0].split() == ["key", "status", "runtime", "size"]
    assert lines[1].split() == ["k1", "done", "0.5", "s", "2.3", "kB"]
    assert lines[2].split() == ["longer-key", "pending", "-", "-"]
    assert lines[1].index("done") == lines[2].index("pending")

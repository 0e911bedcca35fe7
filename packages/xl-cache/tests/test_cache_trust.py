"""A cache file someone else could have written is refused before anything is unpickled.

The planted files carry a pickle that creates a marker file when loaded: the marker proves whether the code ran.
Making a file another user's needs root (CI runs as root); the directory-mode cases run as anyone.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import xl_cache
from hypothesis import given
from hypothesis import strategies as st
from xl_cache.cli import main as cli_main
from xl_cache.layout import trust_problem
from xl_cache.worker import run_task_file

OTHER_UID = 12345
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


class Planted:
    """Unpickling it touches ``marker``: code from the file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def _shared(path: Path, mode: int) -> Path:
    path.mkdir()
    os.chmod(path, mode)  # mkdir's mode is cut by the umask
    return path


def _plant_output(directory: Path, key: str, marker: Path, uid: int = OTHER_UID) -> Path:
    path = Path(xl_cache.write_output(directory, key, len, ([],), output=Planted(marker)))
    os.chown(path, uid, uid)
    assert not marker.exists()
    return path


def _plant_input(directory: Path, key: str, marker: Path) -> Path:
    path = Path(xl_cache.write_input(directory, key, len, (Planted(marker),)))
    os.chown(path, OTHER_UID, OTHER_UID)
    return path


# -- the pure rule ---------------------------------------------------------------------------------------------

modes = st.integers(0, 0o7777)
uids = st.sampled_from([0, 1000, 1001, OTHER_UID])


@given(uid=uids, file_uid=uids, file_mode=modes, dir_uid=uids, dir_mode=modes)
def test_the_rule(uid: int, file_uid: int, file_mode: int, dir_uid: int, dir_mode: int) -> None:
    others_write = stat.S_IWGRP | stat.S_IWOTH
    expected = (
        file_uid == uid
        and not file_mode & others_write
        and dir_uid in (uid, 0)
        and (not dir_mode & others_write or bool(dir_mode & stat.S_ISVTX))
    )
    problem = trust_problem(uid=uid, file_uid=file_uid, file_mode=file_mode, dir_uid=dir_uid, dir_mode=dir_mode)
    assert (problem is None) == expected
    if problem is not None:
        assert "Fix:" in problem and "unpickles a file only if you own it" in problem


@pytest.mark.parametrize(("file_mode", "dir_mode"), [(0o600, 0o700), (0o644, 0o755), (0o600, 0o1777), (0o600, 0o1770)])
def test_our_files_in_a_safe_directory_are_trusted(file_mode: int, dir_mode: int) -> None:
    owner = {"uid": 1000, "file_uid": 1000, "dir_uid": 1000}
    assert trust_problem(**owner, file_mode=file_mode, dir_mode=dir_mode) is None
    assert trust_problem(**{**owner, "dir_uid": 0}, file_mode=file_mode, dir_mode=dir_mode) is None


# -- real files ------------------------------------------------------------------------------------------------


def test_our_own_files_load_in_a_created_and_in_a_sticky_directory(tmp_path: Path) -> None:
    created = tmp_path / "new" / "cache"
    xl_cache.write_output(created, "k", len, ([1],), output=1)
    assert stat.S_IMODE(created.stat().st_mode) == 0o700
    assert xl_cache.get_future_from_cache(created, "k").result(timeout=0) == 1
    sticky = _shared(tmp_path / "scratch", 0o1777)
    xl_cache.write_output(sticky, "k", len, ([1],), output=1)
    assert xl_cache.get_future_from_cache(sticky, "k").result(timeout=0) == 1
    assert [record["output"] for record in xl_cache.get_cache_data(sticky)] == [1]


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_a_directory_others_can_write_without_sticky_bit_is_refused(tmp_path: Path, mode: int) -> None:
    marker = tmp_path / "ran"
    shared = _shared(tmp_path / "shared", mode)
    path = _plant_output(shared, "k", marker, uid=os.geteuid())
    with pytest.raises(xl_cache.CacheTrustError) as refused:
        xl_cache.load_result(shared, "k")
    message = str(refused.value)
    assert str(path) in message and f"{mode:04o}" in message and f"chmod go-w {shared}" in message
    assert not marker.exists()
    os.chmod(shared, 0o700)  # the fix the message names
    xl_cache.load_result(shared, "k")
    assert marker.exists()


def test_a_file_others_can_write_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _plant_output(tmp_path, "k", marker, uid=os.geteuid())
    os.chmod(path, 0o666)
    with pytest.raises(xl_cache.CacheTrustError, match=r"0666 lets others write it.*chmod go-w"):
        xl_cache.load_result(tmp_path, "k")
    assert not marker.exists()


@needs_root
@pytest.mark.parametrize("mode", [0o1777, 0o700])
def test_another_users_output_is_refused_everywhere(tmp_path: Path, mode: int) -> None:
    marker = tmp_path / "ran"
    scratch = _shared(tmp_path / "scratch", mode)
    path = _plant_output(scratch, "k", marker)
    xl_cache.write_output(scratch, "mine", len, ([1],), output=1)
    with pytest.raises(xl_cache.CacheTrustError) as refused:
        xl_cache.load_result(scratch, "k")
    message = str(refused.value)
    assert str(path) in message and f"uid {OTHER_UID}" in message and f"rm {path}" in message
    with pytest.raises(xl_cache.CacheTrustError):
        xl_cache.get_future_from_cache(scratch, "k")
    with pytest.warns(xl_cache.CacheWarning, match="refusing to load"):
        records = xl_cache.get_cache_data(scratch)
    assert [record["cache_key"] for record in records] == ["mine"]  # ours still listed
    with pytest.raises(xl_cache.CacheTrustError):
        xl_cache.read_entry(path)
    assert not marker.exists()


@needs_root
def test_the_worker_refuses_another_users_input_and_keeps_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    scratch = _shared(tmp_path / "scratch", 0o1777)
    planted = _plant_input(scratch, "k", marker)
    output = run_task_file(planted)
    assert not marker.exists()
    assert planted.exists()  # another user's file: not deleted
    outcome = xl_cache.load_result(scratch, "k")  # the output is ours: it says why the task did not run
    assert outcome is not None and outcome.status == "error"
    assert isinstance(outcome.value, xl_cache.CacheTrustError) and str(planted) in str(outcome.value)
    assert output == str(scratch / "k_o.h5")


@needs_root
def test_the_command_line_never_unpickles_another_users_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    scratch = _shared(tmp_path / "scratch", 0o1777)
    path = _plant_output(scratch, "k", marker)
    assert cli_main(["show", str(scratch), "k"]) == 1
    assert f"refusing to load cache file {path}" in capsys.readouterr().err
    assert cli_main(["ls", str(scratch), "--json"]) == 1
    [row] = json.loads(capsys.readouterr().out)
    assert row["status"] == "untrusted"
    old = 0.0
    os.utime(path, (old, old))
    assert cli_main(["gc", str(scratch), "--older-than", "1s"]) == 0
    assert path.exists()  # not ours to delete
    assert not marker.exists()

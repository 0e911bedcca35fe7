from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from xl_comm.framing import new_key
from xl_comm.keys import KEY_ENV, KEY_FILE_ENV, KeyFiles, discard_key_file, load_key


def test_a_key_file_is_private_and_deleted_once_read(tmp_path: Path) -> None:
    key = new_key()
    files = KeyFiles(key)
    try:
        env = files.environment(tmp_path / "shared")
        assert set(env) == {KEY_FILE_ENV} and key.hex() not in str(env)
        path = Path(env[KEY_FILE_ENV])
        assert path.parent.parent == tmp_path / "shared"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert load_key(env) == key
        assert KEY_FILE_ENV not in env and not path.exists()
        with pytest.raises(FileNotFoundError, match="read once"):
            load_key({KEY_FILE_ENV: str(path)})
    finally:
        files.close()


def test_a_directory_its_worker_emptied_is_removed_and_made_anew() -> None:
    key = new_key()
    files = KeyFiles(key)
    try:
        first = files.environment()
        assert load_key(dict(first)) == key
        assert not os.path.exists(os.path.dirname(first[KEY_FILE_ENV]))  # nothing left if the executor is killed
        second = files.environment()
        assert load_key(dict(second)) == key
    finally:
        files.close()


def test_each_worker_start_gets_its_own_file() -> None:
    files = KeyFiles(new_key())
    try:
        first, second = files.environment(), files.environment()
        assert first[KEY_FILE_ENV] != second[KEY_FILE_ENV]
        assert load_key(first) == load_key(second)
    finally:
        files.close()


def test_close_removes_what_no_worker_read(tmp_path: Path) -> None:
    files = KeyFiles(new_key())
    unread = [Path(files.environment()[KEY_FILE_ENV]), Path(files.environment(tmp_path)[KEY_FILE_ENV])]
    files.close()
    files.close()
    assert not any(path.exists() or path.parent.exists() for path in unread)
    with pytest.raises(RuntimeError, match="after close"):
        files.environment()


def test_discard_deletes_an_unread_file() -> None:
    files = KeyFiles(new_key())
    try:
        env = files.environment()
        discard_key_file(env)
        discard_key_file(env)
        assert not os.path.exists(env[KEY_FILE_ENV])
    finally:
        files.close()


def test_key_file_must_be_private(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "key"
    path.write_text(key.hex())
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_key({KEY_FILE_ENV: str(path)})
    assert path.exists()
    path.chmod(0o600)
    assert load_key({KEY_FILE_ENV: str(path)}) == key


def test_a_key_in_the_environment_is_refused_with_the_fix() -> None:
    with pytest.raises(RuntimeError, match=f"{KEY_ENV} is set but not read.*/proc/<pid>/environ.*{KEY_FILE_ENV}"):
        load_key({KEY_ENV: new_key().hex()})


def test_missing_or_short_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=KEY_FILE_ENV):
        load_key({})
    path = tmp_path / "key"
    path.write_text("abcd")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="32 bytes"):
        load_key({KEY_FILE_ENV: str(path)})


def test_the_key_is_random_per_executor() -> None:
    assert new_key() != new_key()

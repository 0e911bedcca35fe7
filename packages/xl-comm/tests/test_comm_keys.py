from __future__ import annotations

import os
from pathlib import Path

import pytest
from xl_comm.framing import new_key
from xl_comm.keys import KEY_ENV, KEY_FILE_ENV, key_environment, load_key


def test_key_from_environment_is_removed_after_reading() -> None:
    key = new_key()
    env = dict(key_environment(key))
    assert load_key(env) == key
    assert KEY_ENV not in env


def test_key_file_must_be_private(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "key"
    path.write_text(key.hex())
    path.chmod(0o600)
    assert load_key({KEY_FILE_ENV: str(path)}) == key
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_key({KEY_FILE_ENV: str(path)})


def test_missing_or_short_key_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=KEY_ENV):
        load_key({})
    with pytest.raises(ValueError, match="32 bytes"):
        load_key({KEY_ENV: "abcd"})


def test_the_key_is_random_per_executor() -> None:
    assert new_key() != new_key()
    assert len(os.urandom(0)) == 0

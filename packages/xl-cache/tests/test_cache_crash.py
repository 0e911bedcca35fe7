"""A writer killed between writing and renaming leaves nothing that reads as a result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import xl_cache
from xl_cache.cli import main as cli_main

# The writer replaces os.replace by a pause: the temporary file is complete and fsynced, the rename not done.
_PAUSED_WRITER = textwrap.dedent(
    """
    import os, sys, time, xl_cache

    def paused(source, target):
        print("paused", source, flush=True)
        time.sleep(600)

    os.replace = paused
    xl_cache.write_output(sys.argv[1], "k", len, (["new"],), output="new")
    """
)


def _kill_paused_writer(directory: Path) -> str:
    writer = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_WRITER, str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline().decode()  # bounded by the test timeout; the writer prints at once
        assert line.startswith("paused"), writer.stderr.read().decode() if writer.stderr else line
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    return line.split()[1]


def test_a_killed_writer_leaves_no_result(tmp_path: Path) -> None:
    temporary = _kill_paused_writer(tmp_path)
    assert os.path.exists(temporary) and ".tmp-" in temporary
    assert xl_cache.load_result(tmp_path, "k") is None
    with pytest.raises(FileNotFoundError):
        xl_cache.get_future_from_cache(tmp_path, "k")
    assert list(xl_cache.scan(tmp_path)) == []
    assert xl_cache.get_cache_data(tmp_path) == []


def test_a_killed_writer_keeps_the_previous_result(tmp_path: Path) -> None:
    xl_cache.write_output(tmp_path, "k", len, (["old"],), output="old")
    _kill_paused_writer(tmp_path)
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.value == "old"


def test_gc_removes_the_leftover_once_it_is_old(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    temporary = _kill_paused_writer(tmp_path)
    assert cli_main(["gc", str(tmp_path), "--older-than", "1h"]) == 0
    assert os.path.exists(temporary)  # young: perhaps a writer still at work
    hour_ago = time.time() - 7200
    os.utime(temporary, (hour_ago, hour_ago))
    assert cli_main(["gc", str(tmp_path), "--older-than", "1h"]) == 0
    assert not os.path.exists(temporary)
    assert "temporary" in capsys.readouterr().out

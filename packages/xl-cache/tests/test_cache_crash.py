"""A writer killed between writing and renaming leaves nothing that reads as a result."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xl_cache
from xl_cache.cli import main as cli_main
from xl_cache.layout import output_name, temp_name
from xl_cache.store import claim_temporary, host_tag

# The writer replaces os.replace by a pause: the temporary file is complete and fsynced, the rename not done.
_PAUSED_WRITER = textwrap.dedent(
    """
    import os, sys, time, xl_cache

    def paused(source, target):
        print("paused", source, flush=True)
        time.sleep(600)

    os.replace = paused
    output = "new" if len(sys.argv) < 3 else b"x" * int(sys.argv[2])
    xl_cache.write_output(sys.argv[1], "k", len, (["new"],), output=output)
    """
)


@contextlib.contextmanager
def _paused_writer(directory: Path, size: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A writer process stopped after its temporary file is complete; yields it and that file's path."""
    argv = [sys.executable, "-c", _PAUSED_WRITER, str(directory), *([] if size is None else [str(size)])]
    writer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline().decode()  # bounded by the test timeout; the writer prints at once
        assert line.startswith("paused"), writer.stderr.read().decode() if writer.stderr else line
        yield writer, line.split()[1]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)


def _kill_paused_writer(directory: Path, size: int | None = None) -> str:
    with _paused_writer(directory, size) as (writer, temporary):
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    return temporary


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


@pytest.mark.timeout(120)
def test_the_next_writer_of_a_key_removes_a_killed_writers_temporary(tmp_path: Path) -> None:
    temporary = _kill_paused_writer(tmp_path, size=64 * 2**20)  # a large result, killed before its rename
    assert os.path.getsize(temporary) > 64 * 2**20
    xl_cache.write_output(tmp_path, "k", len, (["again"],), output="again")
    assert not os.path.exists(temporary)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k_o.h5"]
    outcome = xl_cache.load_result(tmp_path, "k")
    assert outcome is not None and outcome.value == "again"


@pytest.mark.timeout(120)
def test_a_live_writers_temporary_is_kept(tmp_path: Path) -> None:
    with _paused_writer(tmp_path) as (writer, temporary):
        xl_cache.write_output(tmp_path, "k", len, (["mine"],), output="mine")
        assert os.path.exists(temporary) and writer.poll() is None  # still at work: its file stays
        outcome = xl_cache.load_result(tmp_path, "k")
        assert outcome is not None and outcome.value == "mine"
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == ["k_o.h5", os.path.basename(temporary)]


def test_a_live_writer_holds_temporary_0_and_the_next_writer_takes_1(tmp_path: Path) -> None:
    with _paused_writer(tmp_path) as (_, temporary):
        assert os.path.basename(temporary) == f"k_o.h5.tmp-{host_tag()}-0"
        fd, second, number = claim_temporary(str(tmp_path), output_name("k"))
        try:
            assert (os.path.basename(second), number) == (f"k_o.h5.tmp-{host_tag()}-1", 1)
        finally:
            os.close(fd)
            os.unlink(second)


def test_a_dead_writers_temporary_with_a_later_number_is_removed(tmp_path: Path) -> None:
    # left by a writer that died while another held temporary 0: nobody holds its lock
    stale = tmp_path / temp_name(output_name("k"), host_tag(), "1")
    stale.write_bytes(b"x" * 1000)
    xl_cache.write_output(tmp_path, "k", len, ([],), output=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k_o.h5"]

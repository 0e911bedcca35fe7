"""``python -m xl_cache ls|show|rm|gc``."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xl_cache
from xl_cache.cli import main


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    xl_cache.write_output(tmp_path, "added", operator.add, (1, 2), output=3, runtime=0.5)
    xl_cache.write_input(tmp_path, "waiting", operator.add, (1,), queue_id=99)
    try:
        int("x")
    except ValueError as error:
        xl_cache.write_output(tmp_path, "failed", int, ("x",), error=error)
    return tmp_path


def test_ls_is_a_plain_table(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(cache)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["key", "status", "function", "runtime"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"added", "waiting", "failed"}
    assert "done" in rows["added"] and "0.5 s" in rows["added"]
    assert "pending" in rows["waiting"] and "99" in rows["waiting"]
    assert "ValueError: invalid literal" in rows["failed"]


def test_ls_json_and_an_empty_directory(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(cache), "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["added"]["status"] == "done" and rows["added"]["runtime"] == 0.5
    assert rows["waiting"]["queue_id"] == 99 and rows["failed"]["status"] == "error"
    assert main(["ls", str(tmp_path / "nothing")]) == 0
    assert "no cache entries" in capsys.readouterr().out


def test_ls_reports_a_damaged_file(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cache / "junk_o.h5").write_bytes(b"garbage")
    assert main(["ls", str(cache)]) == 1
    assert "damaged" in capsys.readouterr().out


def test_show_an_output_and_a_traceback(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(cache), "added"]) == 0
    out = capsys.readouterr().out
    assert "output" in out and "3" in out and "input_args" in out and "(1, 2)" in out
    assert main(["show", str(cache), "failed_o.h5", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "Traceback" in shown["traceback"] and "ValueError" in shown["traceback"]
    assert main(["show", str(cache), "nothing"]) == 1
    assert "no entry" in capsys.readouterr().err


def test_rm(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rm", str(cache), "added", "waiting"]) == 0
    assert not (cache / "added_o.h5").exists() and not (cache / "waiting_i.h5").exists()
    assert capsys.readouterr().out.count("removed") == 2
    assert main(["rm", str(cache), "added", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"removed": []}
    assert main(["rm", str(cache), "../escape"]) == 2


def test_gc_removes_old_finished_entries_and_keeps_pending_ones(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = time.time() - 40 * 86400
    for path in cache.iterdir():
        os.utime(path, (old, old))
    assert main(["gc", str(cache), "--older-than", "30d", "--dry-run"]) == 0
    assert "would remove 2 file(s)" in capsys.readouterr().out
    assert len(list(cache.iterdir())) == 3
    assert main(["gc", str(cache), "--older-than", "30d", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(Path(p).name for p in report["removed"]) == ["added_o.h5", "failed_o.h5"]
    assert [p.name for p in cache.iterdir()] == ["waiting_i.h5"]
    assert main(["gc", str(cache), "--older-than", "30d", "--include-pending"]) == 0
    assert list(cache.iterdir()) == []
    assert main(["gc", str(cache), "--older-than", "soon"]) == 2


def test_the_module_runs(cache: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xl_cache", "ls", str(cache), "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert {row["key"] for row in json.loads(done.stdout)} == {"added", "waiting", "failed"}

"""The job directory's files: the queue-id sidecar (round trip, atomic) and the log's tail."""

from __future__ import annotations

from pathlib import Path

import pytest
import xl_cache
from hypothesis import given
from hypothesis import strategies as st


@given(st.integers(0, 2**63 - 1))
def test_queue_id_file_round_trip(queue_id: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / xl_cache.QUEUE_ID_FILE_NAME
        xl_cache.write_queue_id_file(path, queue_id)
        assert xl_cache.read_queue_id_file(path) == queue_id
        assert [p.name for p in Path(directory).iterdir()] == [path.name]  # no temporary left behind


@pytest.mark.parametrize("content", ["", "abc", "-5", "12x", "\u00b2", "\xff"])
def test_queue_id_file_without_an_id_reads_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "queue_id"
    path.write_text(content, encoding="latin-1")
    assert xl_cache.read_queue_id_file(path) is None
    assert xl_cache.read_queue_id_file(tmp_path / "missing") is None
    assert xl_cache.read_queue_id_file(None) is None


@pytest.mark.parametrize("bad", [-1, True, "5"])
def test_a_bad_queue_id_is_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="queue_id must be a job id"):
        xl_cache.write_queue_id_file(tmp_path / "queue_id", bad)  # type: ignore[arg-type]


@given(st.lists(st.text(alphabet="abc xyz", max_size=30), max_size=40), st.integers(1, 4000), st.integers(1, 30))
def test_log_tail_is_the_end_of_the_log(lines: list[str], max_bytes: int, count: int) -> None:
    import tempfile

    text = "".join(f"{line}\n" for line in lines)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "time.out"
        path.write_text(text)
        whole = xl_cache.log_tail(path, max_bytes=max_bytes)
        assert text.endswith(whole) and len(whole) == min(len(text), max_bytes)
        assert xl_cache.log_tail(path, max_bytes=max_bytes, lines=count) == "\n".join(whole.splitlines()[-count:])


def test_log_tail_of_no_log_is_empty(tmp_path: Path) -> None:
    assert xl_cache.log_tail(tmp_path / "missing") == ""
    with pytest.raises(ValueError, match="max_bytes"):
        xl_cache.log_tail(tmp_path / "missing", max_bytes=0)


def test_job_directory(tmp_path: Path) -> None:
    assert xl_cache.job_directory(tmp_path, "k") == str(tmp_path / "k")

"""The file-mode worker: ``python -m xl_cache.worker <key>_i.h5`` in a real subprocess, and in-process."""

from __future__ import annotations

import math
import operator
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import xl_cache
from xl_cache.worker import EXIT_NO_OUTPUT, EXIT_OK, EXIT_USAGE


def _run(path: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xl_cache.worker", path], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_a_task_runs_and_its_output_replaces_its_input(tmp_path: Path) -> None:
    path = xl_cache.write_input(tmp_path, "sum", operator.add, (2, 3), queue_id=17)
    done = _run(path)
    assert done.returncode == EXIT_OK, done.stderr
    assert not os.path.exists(path)
    outcome = xl_cache.load_result(tmp_path, "sum")
    assert outcome is not None and outcome.value == 5 and outcome.runtime is not None and outcome.runtime >= 0
    [entry] = xl_cache.list_entries(tmp_path)
    assert entry.queue_id == 17 and entry.input_args == (2, 3) and entry.function is operator.add


def test_an_exception_is_stored_logged_and_exits_zero(tmp_path: Path) -> None:
    log = tmp_path / "errors.txt"
    path = xl_cache.write_input(tmp_path, "bad", int, ("x",), error_log_file=str(log))
    done = _run(path)
    assert done.returncode == EXIT_OK  # afterok dependents start and read the error
    assert "ValueError" in done.stderr and "invalid literal" in done.stderr
    assert "ValueError" in log.read_text() and "args: ('x',)" in log.read_text()
    with pytest.raises(ValueError) as raised:
        xl_cache.get_future_from_cache(tmp_path, "bad")
    assert "Traceback" in str(raised.value.__cause__)


def test_the_task_runs_in_its_cwd(tmp_path: Path) -> None:
    work = tmp_path / "work" / "here"
    path = xl_cache.write_input(tmp_path / "cache", "cwd", os.getcwd, resource_dict={"cwd": str(work)})
    assert _run(path).returncode == EXIT_OK
    outcome = xl_cache.load_result(tmp_path / "cache", "cwd")
    assert outcome is not None and outcome.value == str(work)


def test_output_refs_are_resolved_and_failures_propagate(tmp_path: Path) -> None:
    xl_cache.write_output(tmp_path, "pair", divmod, (7, 2), output=(3, 1))
    try:
        math.sqrt(-1)
    except ValueError as error:
        xl_cache.write_output(tmp_path, "broken", math.sqrt, (-1,), error=error)
    uses = xl_cache.write_input(tmp_path, "uses", operator.add, (xl_cache.OutputRef(str(tmp_path), "pair", 0), 10))
    assert xl_cache.run_task_file(uses) == str(tmp_path / "uses_o.h5")
    outcome = xl_cache.load_result(tmp_path, "uses")
    assert outcome is not None and outcome.value == 13
    fails = xl_cache.write_input(tmp_path, "fails", operator.neg, (xl_cache.OutputRef(str(tmp_path), "broken"),))
    xl_cache.run_task_file(fails)
    with pytest.raises(ValueError, match="math domain error"):
        xl_cache.get_future_from_cache(tmp_path, "fails").result(timeout=0)
    missing = xl_cache.write_input(tmp_path, "missing", operator.neg, (xl_cache.OutputRef(str(tmp_path), "none"),))
    xl_cache.run_task_file(missing)
    with pytest.raises(xl_cache.CachePendingError, match="does not exist"):
        xl_cache.get_future_from_cache(tmp_path, "missing").result(timeout=0)


def test_a_damaged_input_still_yields_an_output_with_the_reason(tmp_path: Path) -> None:
    path = xl_cache.write_input(tmp_path, "damaged", operator.add, (1, 2))
    Path(path).write_bytes(Path(path).read_bytes()[:300])
    done = _run(path)
    assert done.returncode == EXIT_OK
    with pytest.raises(xl_cache.CacheCorruptError, match=r"damaged_i\.h5"):
        xl_cache.get_future_from_cache(tmp_path, "damaged").result(timeout=0)


def test_an_unpicklable_result_is_stored_as_an_error(tmp_path: Path) -> None:
    path = xl_cache.write_input(tmp_path, "lock", threading.Lock)
    xl_cache.run_task_file(path)
    with pytest.raises(TypeError, match="could not be stored"):
        xl_cache.get_future_from_cache(tmp_path, "lock").result(timeout=0)


def test_exit_codes_for_a_missing_input_and_a_bad_name(tmp_path: Path) -> None:
    assert _run(str(tmp_path / "gone_i.h5")).returncode == EXIT_NO_OUTPUT
    wrong = _run(str(tmp_path / "gone_o.h5"))
    assert wrong.returncode == EXIT_USAGE and "_i.h5" in wrong.stderr


def test_a_requeued_job_keeps_the_existing_result(tmp_path: Path) -> None:
    path = xl_cache.write_input(tmp_path, "again", operator.add, (1, 1))
    assert _run(path).returncode == EXIT_OK
    assert _run(path).returncode == EXIT_OK  # the input is gone, the output is there: nothing to do
    outcome = xl_cache.load_result(tmp_path, "again")
    assert outcome is not None and outcome.value == 2


def test_the_job_id_comes_from_the_environment_when_the_input_lacks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = xl_cache.write_input(tmp_path, "k", operator.add, (1, 2))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    xl_cache.run_task_file(path)
    (entry,) = xl_cache.get_cache_data(tmp_path)
    assert entry["queue_id"] == 4242 and entry["output"] == 3


def test_the_job_id_comes_from_the_file_the_launcher_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = xl_cache.write_input(tmp_path, "k", operator.add, (1, 2))
    for name in ("SLURM_JOB_ID", "FLUX_JOB_ID", "XL_CACHE_QUEUE_ID"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "pid").write_text("31337")  # written by the launcher once it knows the id, read with the output
    monkeypatch.setenv("XL_CACHE_QUEUE_ID_FILE", str(tmp_path / "pid"))
    xl_cache.run_task_file(path)
    (entry,) = xl_cache.get_cache_data(tmp_path)
    assert entry["queue_id"] == 31337 and entry["output"] == 3


def test_once_the_output_is_written_the_job_folder_goes_with_its_stderr_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = xl_cache.write_input(tmp_path, "k", operator.add, (1, 2))
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / xl_cache.QUEUE_ID_FILE_NAME).write_text("31337")
    (folder / xl_cache.STDERR_LOG_NAME).write_text("what the job printed to stderr\n")
    monkeypatch.setenv("XL_CACHE_QUEUE_ID_FILE", str(folder / xl_cache.QUEUE_ID_FILE_NAME))
    xl_cache.run_task_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k_o.h5"]


def test_a_missing_job_id_file_leaves_the_id_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = xl_cache.write_input(tmp_path, "k", operator.add, (1, 2))
    for name in ("SLURM_JOB_ID", "FLUX_JOB_ID", "XL_CACHE_QUEUE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XL_CACHE_QUEUE_ID_FILE", str(tmp_path / "never-written"))
    xl_cache.run_task_file(path)
    (entry,) = xl_cache.get_cache_data(tmp_path)
    assert entry.get("queue_id") is None and entry["output"] == 3


def test_only_mpi_rank_zero_writes_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = xl_cache.write_input(tmp_path, "k", operator.add, (1, 2))
    monkeypatch.setenv("PMI_RANK", "1")
    xl_cache.run_task_file(path)
    assert os.path.exists(path) and xl_cache.load_result(tmp_path, "k") is None
    monkeypatch.setenv("PMI_RANK", "0")
    xl_cache.run_task_file(path)
    assert not os.path.exists(path) and xl_cache.load_result(tmp_path, "k").result() == 3  # type: ignore[union-attr]


def test_ranks_combine_into_the_rank_ordered_list_or_the_lowest_failure() -> None:
    from xl_cache.worker import combine_ranks

    assert combine_ranks([(1, None), (2, None)]) == ([1, 2], None)
    first, second = ValueError("r1"), KeyError("r2")
    output, error = combine_ranks([(0, None), (None, first), (None, second)])
    assert output is None and error is first
    if hasattr(first, "__notes__"):
        assert first.__notes__ == ["raised on MPI rank 1 of 3"]

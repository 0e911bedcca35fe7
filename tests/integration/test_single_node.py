"""SingleNodeExecutor as users drive it: the scenarios of the issue, end to end with real worker processes."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap

import psutil
import pytest
from xl_test_helpers import (
    add_offset,
    call_bounded,
    get_cwd,
    get_env,
    get_worker_id,
    get_worker_index,
    init_offset,
    raise_value_error,
    sleep_and_return,
    square,
    wait_until,
    worker_id_barrier,
    worker_ids_barrier,
)

TIMEOUT = 60


def test_public_classes():
    from executorlib import BaseExecutor, SingleNodeExecutor

    assert issubclass(BaseExecutor, concurrent.futures.Executor)
    assert issubclass(SingleNodeExecutor, BaseExecutor)


def test_default_executor_submit_sum(make_executor):
    with make_executor() as exe:
        futures = [exe.submit(sum, [i, i]) for i in range(1, 5)]
        assert [f.result(timeout=TIMEOUT) for f in futures] == [2, 4, 6, 8]


def test_block_allocation_with_init_function_and_map(make_executor):
    with make_executor(max_workers=2, block_allocation=True, init_function=init_offset) as exe:
        assert list(exe.map(add_offset, range(100), timeout=TIMEOUT)) == [i + 10 for i in range(100)]
        # the caller's own value wins over the init function's, by keyword or by position
        assert exe.submit(add_offset, 1, offset=100).result(timeout=TIMEOUT) == 101
        assert exe.submit(add_offset, 1, 5).result(timeout=TIMEOUT) == 6


def test_block_worker_ids_are_distinct_and_in_range(make_executor, tmp_path):
    exe = make_executor(max_workers=2, block_allocation=True)
    # Both tasks wait for each other, so they run at the same time on the two workers.
    futures = [exe.submit(worker_id_barrier, directory=str(tmp_path), parties=2) for _ in range(2)]
    ids = [f.result(timeout=TIMEOUT) for f in futures]
    assert all(type(i) is int for i in ids), ids
    assert sorted(ids) == [0, 1]
    later = {f.result(timeout=TIMEOUT) for f in [exe.submit(get_worker_id) for _ in range(10)]}
    assert later <= {0, 1}


def test_block_worker_ids_with_max_cores(make_executor):
    exe = make_executor(max_cores=2, block_allocation=True)  # two workers of one core each
    ids = {f.result(timeout=TIMEOUT) for f in [exe.submit(get_worker_id) for _ in range(10)]}
    assert ids <= {0, 1}, ids


def test_one_process_worker_id_is_0_for_every_call_and_the_index_is_distinct(make_executor, tmp_path):
    """executorlib 1.x gives every call of its one-process-per-call mode executorlib_worker_id 0 (compat-1x §10);
    executorlib_worker_index tells calls that run at the same time apart."""
    exe = make_executor(max_workers=2)
    futures = [exe.submit(worker_ids_barrier, directory=str(tmp_path), parties=2) for _ in range(2)]
    ids, indices = zip(*[f.result(timeout=TIMEOUT) for f in futures], strict=True)
    assert ids == (0, 0)
    assert sorted(indices) == [0, 1]


def test_block_worker_index_is_the_worker_id(make_executor, tmp_path):
    exe = make_executor(max_workers=2, block_allocation=True)
    futures = [exe.submit(worker_ids_barrier, directory=str(tmp_path), parties=2) for _ in range(2)]
    pairs = sorted(f.result(timeout=TIMEOUT) for f in futures)
    assert pairs == [(0, 0), (1, 1)]
    assert exe.submit(get_worker_index, executorlib_worker_index=7).result(timeout=TIMEOUT) == 7  # the caller's wins


def test_remote_exception_keeps_type_and_remote_traceback(executor_factory, remote_traceback_type):
    exe = executor_factory()
    exc = exe.submit(raise_value_error, "bad value 17").exception(timeout=TIMEOUT)
    assert type(exc) is ValueError
    assert str(exc) == "bad value 17"
    assert isinstance(exc.__cause__, remote_traceback_type)
    assert "raise_value_error" in str(exc.__cause__)
    with pytest.raises(ValueError, match="bad value 17"):
        exe.submit(raise_value_error, "bad value 17").result(timeout=TIMEOUT)


SCRIPT = textwrap.dedent(
    """
    import os

    from executorlib import SingleNodeExecutor

    PARENT_PID = os.getpid()


    def describe(x):
        return x * x, os.getpid() != PARENT_PID


    if __name__ == "__main__":
        for block in (False, True):
            with SingleNodeExecutor(max_workers=2, block_allocation=block) as exe:
                results = list(exe.map(describe, range(4), timeout=60))
            print("block" if block else "one-process", results, flush=True)
    """
)


def test_function_defined_in_a_script_run_as_main(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=2 * TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    expected = "[(0, True), (1, True), (4, True), (9, True)]"
    assert proc.stdout.splitlines() == [f"one-process {expected}", f"block {expected}"], proc.stderr


def test_cwd_per_call_in_one_process_mode(make_executor, tmp_path):
    workdirs = [tmp_path / "wd_a", tmp_path / "wd_b"]
    for wd in workdirs:
        wd.mkdir()
    exe = make_executor(max_workers=2)
    futures = [exe.submit(get_cwd, resource_dict={"cwd": str(wd)}) for wd in workdirs]
    assert [os.path.realpath(f.result(timeout=TIMEOUT)) for f in futures] == [os.path.realpath(wd) for wd in workdirs]


def test_cwd_for_block_workers(make_executor, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    exe = make_executor(max_workers=1, block_allocation=True, resource_dict={"cwd": str(wd)})
    assert os.path.realpath(exe.submit(get_cwd).result(timeout=TIMEOUT)) == os.path.realpath(wd)


def test_threads_per_core_sets_omp_num_threads_per_call(make_executor):
    exe = make_executor(max_workers=1)
    future = exe.submit(get_env, "OMP_NUM_THREADS", resource_dict={"threads_per_core": 2})
    assert future.result(timeout=TIMEOUT) == "2"


def test_threads_per_core_sets_omp_num_threads_for_block_workers(make_executor):
    exe = make_executor(max_workers=1, block_allocation=True, resource_dict={"threads_per_core": 2})
    assert exe.submit(get_env, "OMP_NUM_THREADS").result(timeout=TIMEOUT) == "2"


@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
def test_no_worker_process_left_after_shutdown(make_executor, block_allocation):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    exe = make_executor(max_workers=2, block_allocation=block_allocation)
    futures = [exe.submit(sleep_and_return, i, 0.1) for i in range(4)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 2, 3]
    call_bounded(lambda: exe.shutdown(wait=True), TIMEOUT, "shutdown(wait=True)")

    def leftovers():
        alive = []
        for p in me.children(recursive=True):
            try:
                if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive

    try:
        wait_until(lambda: not leftovers(), timeout=5, what="worker processes exit")
    except TimeoutError:
        pytest.fail(f"processes left after shutdown: {[p.cmdline() for p in leftovers()]}")


def test_error_log_file_collects_one_entry_per_failed_call(executor_factory, tmp_path):
    """The socket worker writes the same entry as the file-mode worker (xl_serial.error_report): the call, the
    traceback, and a blank line between entries."""
    executor_factory.skip_if_reference("no error_log_file in the standard library")
    log = tmp_path / "errors.txt"
    exe = executor_factory(resource_dict={"error_log_file": str(log)})
    for message in ("first", "second"):
        assert isinstance(exe.submit(raise_value_error, message).exception(timeout=60), ValueError)
    assert exe.submit(square, 3).result(timeout=60) == 9
    entries = [entry for entry in log.read_text().split("\n\n") if entry.strip()]
    assert len(entries) == 2, log.read_text()
    for entry, message in zip(entries, ("first", "second"), strict=True):
        assert entry.startswith("function: ") and "raise_value_error" in entry
        assert f"ValueError: {message}" in entry

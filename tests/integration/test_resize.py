"""Resizing a block-allocation pool through ``exe.max_workers = n`` (compat-1x.md §4): growing returns at once and
the new workers take the next ids; shrinking retires the surplus once idle, waits for them to exit, loses no task."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from xl_test_helpers import Gate, add, get_pid, get_worker_id, held_worker, init_offset, wait_until

TIMEOUT = 60


def test_growing_returns_at_once_and_the_new_workers_take_the_next_ids(make_executor: Any, gate: Gate) -> None:
    exe = make_executor(max_workers=1, block_allocation=True, init_function=init_offset, restart_limit=1)
    futures = [exe.submit(held_worker, *gate.args(f"t{i}")) for i in range(3)]
    gate.wait_started("t0")
    began = time.monotonic()
    exe.max_workers = 3
    assert time.monotonic() - began < 1.0, "growing must not wait for the new workers to boot"
    assert exe.max_workers == 3 and exe.info["max_workers"] == 3
    assert [f.done() for f in futures] == [False, False, False]
    gate.wait_started("t1", "t2")  # the queued tasks run on the new workers, side by side with t0
    gate.release()
    results = [f.result(timeout=TIMEOUT) for f in futures]
    assert sorted(worker_id for worker_id, _, _ in results) == [0, 1, 2]
    assert {offset for _, offset, _ in results} == {10}, "new workers run init_function too"


def test_shrinking_waits_for_the_busy_surplus_and_loses_no_queued_task(make_executor: Any, gate: Gate) -> None:
    exe = make_executor(max_workers=2, block_allocation=True)
    held = [exe.submit(held_worker, *gate.args(f"t{i}")) for i in range(2)]
    queued = [exe.submit(add, i, 1) for i in range(6)]
    gate.wait_started("t0", "t1")
    done = threading.Event()

    def shrink() -> None:
        exe.max_workers = 1
        done.set()

    thread = threading.Thread(target=shrink, daemon=True)
    thread.start()
    assert not done.wait(0.5), "the setter returned while both workers were still busy"
    assert exe.max_workers == 1
    gate.release()
    assert done.wait(TIMEOUT), "the setter did not return after the surplus worker finished"
    pids = {pid for _, _, pid in (f.result(timeout=TIMEOUT) for f in held)}
    assert len(pids) == 2
    gone = [pid for pid in pids if not psutil.pid_exists(pid)]
    assert len(gone) == 1, f"exactly one worker has exited when the setter returns, got {gone} of {pids}"
    assert [f.result(timeout=TIMEOUT) for f in queued] == [i + 1 for i in range(6)]
    later = {f.result(timeout=TIMEOUT) for f in [exe.submit(get_pid) for _ in range(6)]}
    assert later == pids - set(gone)


def test_shrinking_idle_workers_and_growing_again_reuses_the_free_ids(make_executor: Any) -> None:
    exe = make_executor(max_workers=3, block_allocation=True)
    assert exe.submit(add, 1, 1).result(timeout=TIMEOUT) == 2
    exe.max_workers = 1
    assert exe.max_workers == 1
    (kept,) = {f.result(timeout=TIMEOUT) for f in [exe.submit(get_worker_id) for _ in range(6)]}
    exe.max_workers = 3
    expected = {0, 1, 2}
    wait_until(
        lambda: {f.result(timeout=TIMEOUT) for f in [exe.submit(get_worker_id) for _ in range(30)]} == expected,
        timeout=TIMEOUT,
        what="tasks on all three workers",
    )
    assert kept in expected


def test_the_setter_in_a_done_callback_does_not_block_the_hub(make_executor: Any, gate: Gate) -> None:
    exe = make_executor(max_workers=2, block_allocation=True)
    errors: list[BaseException] = []

    def shrink(_: Any) -> None:
        try:
            exe.max_workers = 1
        except BaseException as problem:
            errors.append(problem)

    first = exe.submit(held_worker, *gate.args("t0"))
    first.add_done_callback(shrink)
    gate.wait_started("t0")
    gate.release()
    first.result(timeout=TIMEOUT)
    assert [exe.submit(add, i, 1).result(timeout=TIMEOUT) for i in range(4)] == [1, 2, 3, 4]
    assert errors == [] and exe.max_workers == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_a_bad_size_names_the_rule(make_executor: Any, bad: Any) -> None:
    exe = make_executor(max_workers=1, block_allocation=True)
    with pytest.raises(ValueError, match="max_workers must be an int of at least 1"):
        exe.max_workers = bad
    assert exe.max_workers == 1


def test_too_few_gpus_for_more_workers_raise_before_anything_changes(make_executor: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    exe = make_executor(max_workers=2, block_allocation=True, resource_dict={"gpus_per_core": 1})
    with pytest.raises(ValueError, match="need 3 GPUs"):
        exe.max_workers = 3
    assert exe.max_workers == 2
    assert exe.submit(add, 1, 1).result(timeout=TIMEOUT) == 2


@pytest.mark.parametrize("disable_dependencies", [False, True])
def test_without_block_allocation_the_setter_is_not_implemented(
    make_executor: Any, tmp_path: Path, disable_dependencies: bool
) -> None:
    from executorlib.api import TestClusterExecutor

    exe = make_executor(max_workers=2, disable_dependencies=disable_dependencies)
    with pytest.raises(NotImplementedError, match=r"^The max_workers setter is not implemented\.$"):
        exe.max_workers = 3
    with TestClusterExecutor(cache_directory=str(tmp_path), disable_dependencies=disable_dependencies) as files:
        with pytest.raises(NotImplementedError, match=r"^The max_workers setter is not implemented\.$"):
            files.max_workers = 3
        assert files.max_workers is None


def test_after_shutdown_the_getter_is_none(make_executor: Any) -> None:
    exe = make_executor(max_workers=2, block_allocation=True)
    exe.shutdown()
    assert exe.max_workers is None

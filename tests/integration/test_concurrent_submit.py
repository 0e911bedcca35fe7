"""Many threads submitting to one pool at once: every Future completes.

Two threads that dispatched to the same worker could send their messages in the other order than they queued
them; the worker answers in the order it receives, the executor matched answers in queue order and dropped the
ones that did not match, so those Futures stayed pending forever. Found with this test (every run hung)."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

TIMEOUT = 60
THREADS = 8
TASKS_PER_THREAD = 150


def twice(x: int) -> int:
    return 2 * x


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("wait_with", ["result", "concurrent.futures.wait"])
def test_threads_submitting_at_once_all_get_their_results(make_executor, workers: int, wait_with: str) -> None:
    exe = make_executor(max_workers=workers, block_allocation=True)
    wrong: list[tuple[int, object]] = []
    stuck: list[int] = []

    def caller(seed: int) -> None:
        for i in range(TASKS_PER_THREAD):
            x = seed * 10_000 + i
            future = exe.submit(twice, x)
            done = wait_with == "result" or future in concurrent.futures.wait([future], timeout=TIMEOUT).done
            try:
                value = future.result(timeout=TIMEOUT if done else 0)
            except concurrent.futures.TimeoutError:
                stuck.append(x)
                return
            if value != 2 * x:
                wrong.append((x, value))

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert stuck == [], f"Futures never completed, e.g. for x={stuck[:3]}"
    assert wrong == []


def test_an_answer_out_of_order_is_settled_by_its_task_id_and_logged(make_executor, caplog) -> None:
    """No path of ours sends one, but should a worker ever answer a later task first, its Future still gets the
    result (and the error log says so) instead of waiting forever."""
    from executorlib.schedulers.workers import TaskItem
    from xl_comm import AssistedFuture, Result

    exe = make_executor(max_workers=1, block_allocation=True)
    assert exe.submit(twice, 1).result(timeout=TIMEOUT) == 2  # the worker is up
    scheduler = exe._scheduler
    worker_id, worker = next(iter(scheduler._workers.items()))
    first, second = (TaskItem(AssistedFuture(), [b""], exe._resources, twice) for _ in range(2))
    for item in (first, second):
        assert item.start()
        worker.inflight.append(item)
    scheduler.on_reply(worker_id, second.task_id, Result(7))
    assert second.future.result(timeout=0) == 7
    assert "answered task" in caplog.text and list(worker.inflight) == [first]
    scheduler.on_reply(worker_id, 10**9, Result(8))  # an id it never ran: dropped, with a warning
    assert "was not running" in caplog.text and not first.future.done()
    scheduler.on_reply(worker_id, first.task_id, Result(6))
    assert first.future.result(timeout=0) == 6 and not worker.inflight

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

"""A worker's hello must never be lost, however late the executor's thread gets to expect it.

The spawning thread can be held up between starting a worker and telling the hub to expect it, e.g. by another
thread holding the GIL in a long C call (numpy, h5py, pickling a large argument). Here that delay is made
certain (a hook that delays the expectation) and made likely (a thread making GIL-holding calls).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from xl_test_helpers import add, call_bounded

TIMEOUT = 60


@pytest.fixture
def late_expect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Hub.expect runs half a second late: the worker's hello is in by then."""
    from xl_comm.hub import Hub

    original = Hub.expect

    def late(self: Hub, worker_id: int, sentinel: int | None) -> None:
        time.sleep(0.5)
        original(self, worker_id, sentinel)

    monkeypatch.setattr(Hub, "expect", late)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
def test_a_hello_before_the_expectation_still_gets_its_task(late_expect, make_executor, block_allocation) -> None:
    exe = make_executor(max_workers=2, block_allocation=block_allocation)
    futures = [exe.submit(add, i, 1) for i in range(4)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [1, 2, 3, 4]


@pytest.fixture
def gil_hog() -> Iterator[None]:
    """A thread that keeps making C calls which hold the GIL for tens of milliseconds each."""
    stop = threading.Event()
    data = [random.random() for _ in range(200_000)]

    def hog() -> None:
        while not stop.is_set():
            sorted(data)  # one C call: the GIL is not released until it returns

    thread = threading.Thread(target=hog, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
def test_pools_start_and_stop_under_a_gil_holding_thread(gil_hog, block_allocation) -> None:
    from executorlib import SingleNodeExecutor

    for round_ in range(4):
        exe = SingleNodeExecutor(max_workers=2, block_allocation=block_allocation)
        try:
            futures = [exe.submit(add, round_, i) for i in range(5)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [round_ + i for i in range(5)]
        finally:
            call_bounded(lambda e=exe: e.shutdown(wait=True), TIMEOUT, what="shutdown under a GIL-holding thread")

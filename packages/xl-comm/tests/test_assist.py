"""Callers that wait in ``AssistedFuture.result()`` read the hub's socket themselves: real workers, real sockets."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from comm_helpers import start_worker
from xl_comm.assist import AssistedFuture
from xl_comm.hub import Hub
from xl_comm.messages import Failure, Hello, Result, Shutdown, Task

WAIT = 30.0


class Settler:
    """A minimal scheduler: completes the Future of each task id, fails a dead worker's Futures."""

    def __init__(self) -> None:
        self.hub: Hub | None = None
        self.futures: dict[int, tuple[int, AssistedFuture]] = {}
        self.hellos: set[int] = set()
        self.reply_threads: list[int] = []
        self.reply_in_loop: list[bool] = []
        self.changed = threading.Condition()

    def on_hello(self, worker_id: int, hello: Hello) -> None:
        with self.changed:
            self.hellos.add(worker_id)
            self.changed.notify_all()

    def on_reply(self, worker_id: int, task_id: int, reply: Result | Failure) -> None:
        assert self.hub is not None
        self.reply_threads.append(threading.get_ident())
        self.reply_in_loop.append(self.hub.in_io_thread())
        _, future = self.futures.pop(task_id)
        if isinstance(reply, Result):
            future.set_result(reply.value)
        else:
            future.set_exception(reply.error.rebuild())

    def on_exit(self, worker_id: int) -> None:
        for task_id, (owner, future) in list(self.futures.items()):
            if owner == worker_id:
                del self.futures[task_id]
                future.set_exception(RuntimeError(f"worker {worker_id} died"))

    def wait_hello(self, worker_id: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: worker_id in self.hellos, WAIT)

    def run(self, worker_id: int, task_id: int, fn: Any, *args: Any) -> AssistedFuture:
        assert self.hub is not None
        future = self.hub.future()
        self.futures[task_id] = (worker_id, future)
        self.hub.send(worker_id, Task(fn, args), task_id=task_id)
        return future


@pytest.fixture
def settler() -> Iterator[Settler]:
    handler = Settler()
    handler.hub = Hub(handler)
    yield handler
    handler.hub.close()


def _started(settler: Settler, worker_id: int) -> Any:
    assert settler.hub is not None
    process = start_worker(settler.hub, worker_id)
    settler.wait_hello(worker_id)
    return process


def test_the_waiting_caller_reads_its_own_reply(settler: Settler) -> None:
    process = _started(settler, 1)
    for task_id in range(1, 21):
        assert settler.run(1, task_id, pow, 2, task_id).result(timeout=WAIT) == 2**task_id
    # A reply that arrives before its caller starts to help goes to the IO thread (a busy machine can delay the
    # caller that long), so the tasks that check who read the reply take 0.1 s.
    settler.reply_threads.clear()
    for task_id in range(21, 31):
        assert settler.run(1, task_id, time.sleep, 0.1).result(timeout=WAIT) is None
    mine = settler.reply_threads.count(threading.get_ident())
    assert mine >= 9, f"only {mine} of 10 replies were read by the waiting caller"
    assert all(settler.reply_in_loop), "callbacks run inside the hub's loop, whichever thread runs them"
    assert settler.hub is not None
    settler.hub.send(1, Shutdown())
    assert process.wait(timeout=WAIT) == 0


def test_a_reply_nobody_waits_for_still_arrives(settler: Settler) -> None:
    """With no caller in result(), the IO thread reads the socket (also right after a caller stopped helping)."""
    process = _started(settler, 1)
    assert settler.run(1, 1, abs, -1).result(timeout=WAIT) == 1
    unwatched = settler.run(1, 2, abs, -2)
    done, _ = concurrent.futures.wait([unwatched], timeout=WAIT)
    assert done == {unwatched} and unwatched.result(timeout=0) == 2
    assert settler.reply_threads[-1] != threading.get_ident()
    assert settler.hub is not None
    settler.hub.send(1, Shutdown())
    process.wait(timeout=WAIT)


def test_a_worker_death_wakes_the_helping_caller(settler: Settler) -> None:
    process = _started(settler, 1)
    future = settler.run(1, 1, time.sleep, 60)
    threading.Timer(0.3, process.kill).start()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="worker 1 died"):
        future.result(timeout=WAIT)
    assert time.monotonic() - start < 5
    process.wait(timeout=WAIT)


def test_result_timeout_is_honoured_once(settler: Settler) -> None:
    process = _started(settler, 1)
    future = settler.run(1, 1, time.sleep, 3)
    start = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.3)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.exception(timeout=0.3)
    assert time.monotonic() - start < 1.5, "the helping part and the plain wait must share one timeout"
    assert future.result(timeout=WAIT) is None
    process.kill()
    process.wait(timeout=WAIT)


def test_cancel_from_another_thread_ends_the_wait(settler: Settler) -> None:
    assert settler.hub is not None
    future = settler.hub.future()  # never sent: only cancel() can complete it
    threading.Timer(0.2, future.cancel).start()
    start = time.monotonic()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=WAIT)
    assert time.monotonic() - start < 5


def test_two_callers_help_at_once(settler: Settler) -> None:
    processes = [_started(settler, 1), _started(settler, 2)]
    results: dict[int, list[Any]] = {1: [], 2: []}

    def caller(worker_id: int) -> None:
        for i in range(50):
            task_id = worker_id * 1000 + i
            results[worker_id].append(settler.run(worker_id, task_id, pow, worker_id, i).result(timeout=WAIT))

    threads = [threading.Thread(target=caller, args=(w,)) for w in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert results == {w: [w**i for i in range(50)] for w in (1, 2)}
    # both have left: the IO thread reads replies again
    last = settler.run(1, 99, abs, -5)
    done, _ = concurrent.futures.wait([last], timeout=WAIT)
    assert done == {last}
    assert settler.hub is not None
    for worker_id, process in zip((1, 2), processes, strict=True):
        settler.hub.send(worker_id, Shutdown())
        process.wait(timeout=WAIT)


def test_closing_the_hub_releases_a_helper(settler: Settler) -> None:
    assert settler.hub is not None
    hub = settler.hub
    future = hub.future()  # nothing will ever complete it
    returned: list[float] = []

    def helper() -> None:
        hub.assist(future, WAIT)
        returned.append(time.monotonic())

    thread = threading.Thread(target=helper)
    thread.start()
    time.sleep(0.3)
    closed_at = time.monotonic()
    hub.close()
    thread.join(timeout=WAIT)
    assert returned and returned[0] - closed_at < 2


def test_a_callback_that_waits_on_another_future_does_not_lock_up(settler: Settler) -> None:
    """Done-callbacks may run in a helping caller, inside the loop: a result() there must not help again."""
    process = _started(settler, 1)
    first = settler.run(1, 1, abs, -1)
    assert first.result(timeout=WAIT) == 1
    seen: list[Any] = []
    second = settler.run(1, 2, abs, -2)
    second.add_done_callback(lambda f: seen.append(first.result(timeout=1) + f.result(timeout=1)))
    assert second.result(timeout=WAIT) == 2
    assert seen == [3]
    assert settler.hub is not None
    settler.hub.send(1, Shutdown())
    process.wait(timeout=WAIT)


def test_any_way_of_completing_the_future_ends_the_wait(settler: Settler) -> None:
    """Code may complete a Future through the base class (executorlib's cache does, to skip its own override):
    result() must see that before it waits, and while it waits."""
    assert settler.hub is not None
    early = settler.hub.future()
    concurrent.futures.Future.set_result(early, "early")
    assert early.result(timeout=WAIT) == "early"
    late = settler.hub.future()
    threading.Timer(0.2, lambda: concurrent.futures.Future.set_exception(late, KeyError("late"))).start()
    start = time.monotonic()
    with pytest.raises(KeyError):
        late.result(timeout=WAIT)
    assert time.monotonic() - start < 5


def test_a_forked_child_gets_its_own_waiter() -> None:
    from xl_comm.assist import thread_waiter

    parent = thread_waiter()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if it made a new eventfd instead of sharing the parent's
        child = thread_waiter()
        os._exit(0 if child is not parent and child.ident == threading.get_ident() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert thread_waiter() is parent

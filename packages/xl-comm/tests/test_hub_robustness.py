"""The hub never loses a hello, survives anything a payload raises, and does not let a rogue peer flood the log."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import pytest
import zmq
from comm_helpers import Recorder, returns_load_raises, start_worker, worker_process
from xl_comm.framing import pack_body
from xl_comm.hub import Hub
from xl_comm.messages import Failure, Result, Shutdown, Task


@pytest.fixture
def hub_and_recorder():
    recorder = Recorder()
    hub = Hub(recorder)
    yield hub, recorder
    hub.close()


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.timeout(60)
def test_a_hello_that_arrives_before_expect_is_held_not_dropped(hub_and_recorder) -> None:
    # What a caller held up by the GIL between spawning and expect() does: the hello is in before expect().
    hub, rec = hub_and_recorder
    process = worker_process(hub, 1)
    try:
        _until(lambda: hub.rejected + getattr(hub, "held_hellos", 0) > 0)
        hub.expect(1, os.pidfd_open(process.pid))
        rec.wait_for(lambda: 1 in rec.hellos, timeout=10)
        assert hub.rejected == 0 and hub.held_hellos == 0
        hub.send(1, Task(pow, (2, 5)), task_id=1)
        rec.wait_for(lambda: rec.replies, timeout=10)
        assert rec.replies == [(1, 1, Result(32))]
        hub.send(1, Shutdown())
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.timeout(60)
def test_a_held_hello_of_a_worker_that_died_is_followed_by_its_exit(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = worker_process(hub, 1)
    _until(lambda: hub.held_hellos == 1)
    sentinel = os.pidfd_open(process.pid)
    process.kill()
    process.wait(timeout=10)
    hub.expect(1, sentinel)
    rec.wait_for(lambda: rec.exits == [1], timeout=10)
    assert 1 in rec.hellos
    hub.forget(1)


@pytest.mark.timeout(60)
def test_forget_drops_a_held_hello(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = worker_process(hub, 7)
    try:
        _until(lambda: hub.held_hellos == 1)
        hub.forget(7)
        _until(lambda: hub.held_hellos == 0)
        assert rec.hellos == {}
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
def test_a_reply_whose_unpickling_raises_a_base_exception_fails_its_task_only(
    hub_and_recorder, kind: type[BaseException], batched: bool
) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1)
    try:
        rec.wait_for(lambda: 1 in rec.hellos)
        if batched:
            bad, good = Task(returns_load_raises, (kind,)), Task(pow, (3, 2))
            hub.send_batch(1, [(1, pack_body(bad)), (2, pack_body(good))])
        else:
            hub.send(1, Task(returns_load_raises, (kind,)), task_id=1)
            rec.wait_for(lambda: len(rec.replies) == 1, timeout=10)
            hub.send(1, Task(pow, (3, 2)), task_id=2)
        rec.wait_for(lambda: len(rec.replies) == 2, timeout=10)
        (_, first, failure), (_, second, result) = sorted(rec.replies, key=lambda reply: reply[1])
        assert (first, second) == (1, 2) and result == Result(9)
        assert isinstance(failure, Failure)
        error = failure.error.rebuild()
        assert isinstance(error, Exception), "a BaseException from a payload must not reach the caller as such"
        assert kind.__name__ in str(error)
        assert not hub.closed, "the IO thread survives"
        hub.send(1, Shutdown())
        process.wait(timeout=10)
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.timeout(60)
def test_a_flood_of_foreign_messages_is_counted_but_logged_once(hub_and_recorder, caplog) -> None:
    hub, _ = hub_and_recorder
    caplog.set_level(logging.WARNING, logger="xl_comm")
    context = zmq.Context()
    rogue = context.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(hub.address)
    try:
        for _ in range(300):
            rogue.send_multipart([b"not", b"ours"])
        _until(lambda: hub.rejected == 300)
    finally:
        rogue.close()
        context.term()
    warnings = [record for record in caplog.records if record.name.startswith("xl_comm")]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]

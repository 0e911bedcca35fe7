"""Several messages in one: the framing (hypothesis) and a real worker answering a batch."""

from __future__ import annotations

import time
from typing import Any

from comm_helpers import Recorder, start_worker
from hypothesis import given
from hypothesis import strategies as st
from xl_comm.framing import BodyError, Header, new_key, open_batch, open_header, pack_batch, pack_body, seal
from xl_comm.hub import Hub
from xl_comm.messages import Kind, Result, Shutdown, Task

KEY = new_key()
values = st.one_of(
    st.integers(), st.text(max_size=20), st.binary(max_size=200_000), st.lists(st.integers(), max_size=5)
)


def _wire(frames: list[Any]) -> list[bytes]:
    return [f.raw().tobytes() if hasattr(f, "raw") else bytes(f) for f in frames]


@given(st.lists(st.tuples(st.integers(1, 2**63), values), min_size=1, max_size=20))
def test_batch_round_trip(members: list[tuple[int, Any]]) -> None:
    body = pack_batch([(Kind.RESULT, task_id, pack_body(Result(value))) for task_id, value in members])
    frames = _wire(seal(KEY, Header(Kind.REPLIES, 3, 1, 0), body))
    header = open_header(KEY, frames)
    decoded = open_batch(header, frames)
    assert [(h.task_id, m) for h, m in decoded] == [(task_id, Result(value)) for task_id, value in members]


def test_a_member_that_does_not_unpickle_fails_alone() -> None:
    body = pack_batch(
        [(Kind.RESULT, 1, pack_body(Result(1))), (Kind.RESULT, 2, [b"garbage"]), (Kind.RESULT, 3, pack_body(Result(3)))]
    )
    frames = _wire(seal(KEY, Header(Kind.REPLIES, 3, 1, 0), body))
    decoded = open_batch(open_header(KEY, frames), frames)
    assert decoded[0][1] == Result(1) and decoded[2][1] == Result(3)
    assert isinstance(decoded[1][1], BodyError) and decoded[1][0].task_id == 2


def test_worker_runs_a_batch_in_order_and_flushes_before_a_slow_member() -> None:
    recorder = Recorder()
    hub = Hub(recorder)
    try:
        process = start_worker(hub, 1)
        recorder.wait_for(lambda: 1 in recorder.hellos)
        tasks = [(1, Task(pow, (2, 1))), (2, Task(pow, (2, 2))), (3, Task(time.sleep, (1.0,))), (4, Task(pow, (2, 4)))]
        sent = time.monotonic()
        hub.send_batch(1, [(task_id, pack_body(task)) for task_id, task in tasks])
        recorder.wait_for(lambda: len(recorder.replies) >= 2)
        assert time.monotonic() - sent < 0.9, "answers before the slow member must not wait for it"
        recorder.wait_for(lambda: len(recorder.replies) == 4)
        assert [(task_id, reply) for _, task_id, reply in recorder.replies] == [
            (1, Result(2)),
            (2, Result(4)),
            (3, Result(None)),
            (4, Result(16)),
        ]
        hub.send(1, Shutdown())
        assert process.wait(timeout=10) == 0
    finally:
        hub.close()

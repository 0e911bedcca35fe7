"""A Result carries the seconds the worker spent in the function (``time.perf_counter`` around the call only):
worker start-up, unpickling and the wire are not in it. The executor's cache records it as the entry's runtime."""

from __future__ import annotations

import time

import pytest
from comm_helpers import Recorder, start_worker
from hypothesis import given
from hypothesis import strategies as st
from xl_comm.framing import Header, open_body, open_header, pack_body, seal
from xl_comm.hub import Hub
from xl_comm.messages import Kind, Result, Shutdown, Task
from xl_comm.team import combine

KEY = b"k" * 32


@given(value=st.integers() | st.text() | st.none(), runtime=st.floats(min_value=0, max_value=1e9))
def test_the_runtime_crosses_the_wire(value: object, runtime: float) -> None:
    frames = seal(KEY, Header(Kind.RESULT, 1, 1, 7), pack_body(Result(value, runtime)))
    decoded = open_body(open_header(KEY, frames), frames)
    assert isinstance(decoded, Result) and decoded.value == value and decoded.runtime == runtime


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=8))
def test_an_mpi_call_lasts_as_long_as_its_slowest_rank(runtimes: list[float]) -> None:
    answer = combine({rank: Result(rank, runtime) for rank, runtime in enumerate(runtimes)}, len(runtimes))
    assert isinstance(answer, Result) and answer.value == list(range(len(runtimes)))
    assert answer.runtime == max(runtimes)


def test_the_runtime_is_the_time_in_the_function_only() -> None:
    recorder = Recorder()
    hub = Hub(recorder)
    try:
        process = start_worker(hub, 1)
        recorder.wait_for(lambda: 1 in recorder.hellos)
        hub.send(1, Task(time.sleep, (0.3,)), task_id=1)
        hub.send(1, Task(pow, (2, 10)), task_id=2)
        recorder.wait_for(lambda: len(recorder.replies) == 2)
        slow, fast = (reply for _, _, reply in sorted(recorder.replies, key=lambda r: r[1]))
        assert isinstance(slow, Result) and isinstance(fast, Result) and fast.value == 1024
        assert 0.3 <= slow.runtime < 0.3 + 2.0  # generous: a loaded machine may stretch the sleep
        assert 0 < fast.runtime < 0.05  # a few microseconds of pow, nothing of the worker around it
        hub.send(1, Shutdown())
        assert process.wait(timeout=10) == 0
    finally:
        hub.close()


def test_results_compare_by_value_not_by_how_long_they_took() -> None:
    assert Result(3, 0.5) == Result(3, 2.0) and Result(3) != Result(4)
    with pytest.raises(AttributeError):
        Result(3).runtime = 1.0  # type: ignore[misc]

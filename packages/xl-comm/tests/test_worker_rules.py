"""The worker numbers a function is given, and how a worker leaves: SystemExit and KeyboardInterrupt in user code
end the worker with their status instead of being answered (an answer would re-raise them in the executor's
process, as a 1.x worker never does)."""

from __future__ import annotations

import pytest
from comm_helpers import Recorder, call_sys_exit, start_worker
from hypothesis import given
from hypothesis import strategies as st
from xl_comm.framing import pack_body
from xl_comm.hub import Hub
from xl_comm.messages import Init, Result, Task
from xl_comm.worker_loop import EXIT_INTERRUPTED, departure, presets


@given(st.integers(min_value=0, max_value=10**6), st.booleans())
def test_presets_give_the_index_and_a_worker_id_of_0_for_one_shot_workers(index: int, one_shot: bool) -> None:
    values = presets(index, one_shot)
    assert values["executorlib_worker_index"] == index
    assert values["executorlib_worker_id"] == (0 if one_shot else index)


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_an_int_code_exits_with_its_low_byte_as_python_does(code: int) -> None:
    left = departure(SystemExit(code), "the function f")
    assert left.status == code & 0xFF and 0 <= left.status <= 255
    assert left.note == f"the function f called sys.exit({code!r})"


@given(st.text(max_size=20) | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=3))
def test_any_other_code_exits_with_1(code: object) -> None:
    assert departure(SystemExit(code), "init_function").status == 1


def test_bare_exit_is_0_and_keyboard_interrupt_is_130() -> None:
    assert departure(SystemExit(), "the function f").status == 0
    assert departure(SystemExit(None), "the function f").note == "the function f called sys.exit()"
    interrupted = departure(KeyboardInterrupt(), "the function g")
    assert (interrupted.status, interrupted.note) == (EXIT_INTERRUPTED, "the function g raised KeyboardInterrupt")


@pytest.fixture
def hub_and_recorder():
    recorder = Recorder()
    hub = Hub(recorder)
    yield hub, recorder
    hub.close()


@pytest.mark.timeout(60)
def test_sys_exit_in_a_task_ends_the_worker_with_its_status_and_no_answer(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1)
    try:
        rec.wait_for(lambda: 1 in rec.hellos)
        hub.send(1, Task(call_sys_exit, (3,)), task_id=1)
        assert process.wait(timeout=30) == 3
        rec.wait_for(lambda: rec.exits == [1])
        assert rec.replies == []
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.timeout(60)
def test_answers_made_before_the_exit_in_a_batch_are_sent_first(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1)
    try:
        rec.wait_for(lambda: 1 in rec.hellos)
        batch = [(1, pack_body(Task(pow, (2, 3)))), (2, pack_body(Task(call_sys_exit, (None,))))]
        hub.send_batch(1, [*batch, (3, pack_body(Task(pow, (2, 4))))])
        assert process.wait(timeout=30) == 0
        rec.wait_for(lambda: rec.exits == [1] and rec.replies)
        assert [(task_id, reply) for _, task_id, reply in rec.replies] == [(1, Result(8))]
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.timeout(60)
def test_keyboard_interrupt_in_init_function_ends_the_worker(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1)
    try:
        rec.wait_for(lambda: 1 in rec.hellos)
        hub.send(1, Init(interrupting_init))
        hub.send(1, Task(pow, (2, 3)), task_id=1)
        assert process.wait(timeout=30) == EXIT_INTERRUPTED
        assert rec.replies == []
    finally:
        process.kill()
        process.wait(timeout=10)


def interrupting_init() -> dict[str, int]:
    raise KeyboardInterrupt

"""The message classes behave as frozen dataclasses would (they are written out to keep the worker's start short):
equal and hashed by their compared fields, immutable, picklable, and their ``__slots__`` are their fields in order
(framing packs a message as that tuple and rebuilds it positionally)."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_comm.framing import Header, open_body, pack_body, seal
from xl_comm.messages import MESSAGE_CLASSES, Failure, Hello, Init, Kind, Result, Settled, Shutdown, Task
from xl_serial import RemoteError

KEY = bytes(range(32))
scalars = st.none() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False)


@st.composite
def messages(draw: st.DrawFn) -> Any:
    """Any message with hashable field values (a Task's kwargs are a dict, so Tasks are built without hashing)."""
    return draw(
        st.one_of(
            st.builds(Init, st.just(dict)),
            st.builds(Task, st.just(pow), st.tuples(scalars, scalars), st.none(), st.none() | st.text(max_size=8)),
            st.just(Shutdown()),
            st.just(Settled()),
            st.builds(Hello, st.integers(0, 2**31), st.text(max_size=8)),
            st.builds(Result, scalars, st.floats(0, 10)),
            st.builds(Failure, st.builds(RemoteError, st.just(KeyError("k")), st.text(max_size=8), st.just("here"))),
        )
    )


def _fields(message: Any) -> tuple[Any, ...]:
    return tuple(getattr(message, name) for name in type(message).__slots__)


@given(messages())
def test_a_message_rebuilt_from_its_fields_is_equal_and_hashes_alike(message: Any) -> None:
    again = type(message)(*_fields(message))
    assert again == message
    assert not again != message  # noqa: SIM202 (__ne__ is derived from __eq__)
    if not isinstance(message, Task):  # a Task's kwargs dict is unhashable, as with a dataclass
        assert hash(again) == hash(message)
    assert MESSAGE_CLASSES[message.kind] is type(message)


@given(messages())
def test_pickle_and_copy_keep_every_field(message: Any) -> None:
    for back in (pickle.loads(pickle.dumps(message)), copy.copy(message), copy.deepcopy(message)):
        assert type(back) is type(message)
        assert repr(_fields(back)) == repr(_fields(message))  # runtime included, which == does not compare


@given(messages())
def test_fields_are_read_only(message: Any) -> None:
    for name in (*type(message).__slots__, "kind", "other"):
        with pytest.raises(FrozenInstanceError, match="immutable"):
            setattr(message, name, 1)
        with pytest.raises(FrozenInstanceError, match="immutable"):
            delattr(message, name)


@given(messages())
def test_framing_round_trip_through_the_slots(message: Any) -> None:
    """pack_body sends ``__slots__`` in order and the receiver calls the class with them positionally."""
    header = Header(message.kind, 1, 1, 1)
    back = open_body(header, seal(KEY, header, pack_body(message)))
    assert type(back) is type(message)
    if isinstance(message, Failure):
        assert back.error.origin == message.error.origin and back.ends_worker == message.ends_worker
    else:
        assert back == message


def test_result_runtime_is_a_measurement_not_part_of_the_answer() -> None:
    assert Result(1, 0.5) == Result(1, 2.0)
    assert hash(Result(1, 0.5)) == hash(Result(1, 2.0))
    assert Result(1) != Result(2)
    assert repr(Result(1, 0.5)) == "Result(value=1, runtime=0.5)"


def test_messages_of_different_kinds_never_compare_equal() -> None:
    assert Shutdown() != Settled()
    assert Hello(1, "a") != (1, "a")
    assert Task(pow) == Task(pow, (), {}, None)
    assert Task(pow).kwargs == {} and Task(pow).kwargs is not Task(pow).kwargs
    assert {message.kind for message in (Init(dict), Shutdown(), Settled(), Hello(1, "a"))} == {
        Kind.INIT,
        Kind.SHUTDOWN,
        Kind.SETTLED,
        Kind.HELLO,
    }


def test_positional_and_keyword_construction_agree() -> None:
    error = RemoteError(ValueError("v"), "tb", "there")
    assert Task(fn=pow, args=(1,), kwargs={"a": 1}, error_log_file="f") == Task(pow, (1,), {"a": 1}, "f")
    assert Failure(error=error, ends_worker=True) == Failure(error, True)
    assert Hello(pid=3, host="h") == Hello(3, "h")
    with pytest.raises(TypeError):
        Hello(3)  # type: ignore[call-arg]


def test_the_worker_start_loads_no_more_than_it_needs() -> None:
    """Importing the worker's entry module loads neither the remote-error module (only failures need it), nor the
    key and hashing helpers of xl_serial, nor signal: each would add to every worker's start (issue 17)."""
    code = "import sys, xl_comm.worker; print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(run.stdout.split())
    assert "xl_comm.worker_loop" in loaded
    assert not loaded & {"xl_serial.remote_error", "xl_serial.keys", "signal", "xl_comm.hub", "hashlib"}

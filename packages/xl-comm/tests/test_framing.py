from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_comm.framing import (
    HEADER_BYTES,
    PROTOCOL_VERSION,
    AuthenticationError,
    BodyError,
    Header,
    ProtocolError,
    new_key,
    open_body,
    open_frames,
    open_header,
    pack_body,
    seal,
)
from xl_comm.messages import TO_EXECUTOR, TO_WORKER, Failure, Hello, Init, Kind, Result, Shutdown, Task
from xl_serial import capture

KEY = new_key()
values = st.recursive(
    st.none() | st.integers() | st.text(max_size=10) | st.binary(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=10,
)


def _error() -> Failure:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        return Failure(capture(exc))


messages = st.one_of(
    st.builds(
        Task, fn=st.just(pow), args=st.tuples(values, values), kwargs=st.dictionaries(st.text(max_size=3), values)
    ),
    st.builds(Result, value=values),
    st.builds(Hello, pid=st.integers(0, 2**31), host=st.text(max_size=20)),
    st.just(Shutdown()),
    st.just(Init(dict)),
    st.builds(_error),
)
headers = st.builds(
    Header,
    kind=st.sampled_from(list(Kind)),
    worker_id=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**64 - 1),
    task_id=st.integers(0, 2**64 - 1),
)


def _raw(frames: list[Any]) -> list[bytes]:
    """What a receiver gets: plain bytes per frame."""
    return [f.raw().tobytes() if hasattr(f, "raw") else bytes(f) for f in frames]


@given(messages, headers)
def test_frame_round_trip(message: Any, header: Header) -> None:
    header = Header(message.kind, header.worker_id, header.seq, header.task_id)
    frames = [
        bytes(memoryview(f).cast("B")) if not isinstance(f, bytes) else f for f in seal(KEY, header, pack_body(message))
    ]
    assert frames[0][2] == PROTOCOL_VERSION, "the version leads every message"
    assert open_header(KEY, frames) == header
    back = open_body(header, frames)
    if isinstance(message, Failure):
        assert type(back.error.exception) is KeyError
    elif isinstance(message, Task | Init):
        assert back.fn is message.fn and back.kind == message.kind
    else:
        assert back == message


@given(messages, st.data())
def test_any_flipped_byte_is_rejected(message: Any, data: st.DataObject) -> None:
    frames = [
        bytearray(bytes(memoryview(f).cast("B"))) for f in seal(KEY, Header(message.kind, 1, 1, 1), pack_body(message))
    ]
    index = data.draw(st.sampled_from([i for i, f in enumerate(frames) if len(f)]))
    position = data.draw(st.integers(0, len(frames[index]) - 1))
    frames[index][position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(ProtocolError):
        open_header(KEY, frames)


@given(messages)
def test_another_key_is_rejected(message: Any) -> None:
    frames = seal(new_key(), Header(message.kind, 1, 1, 1), pack_body(message))
    with pytest.raises(AuthenticationError):
        open_header(KEY, frames)


def test_a_newer_protocol_version_names_both_versions() -> None:
    frames = [bytearray(bytes(f)) for f in seal(KEY, Header(Kind.SHUTDOWN, 1, 1, 0), pack_body(Shutdown()))]
    frames[0][2] = PROTOCOL_VERSION + 1
    with pytest.raises(ProtocolError, match=f"version {PROTOCOL_VERSION + 1}.*speaks {PROTOCOL_VERSION}"):
        open_header(KEY, frames)


def test_too_few_frames_and_foreign_bytes_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="empty message"):
        open_header(KEY, [])
    with pytest.raises(ProtocolError, match="bad header"):
        open_header(KEY, [b"x"])
    with pytest.raises(ProtocolError, match="bad header"):
        open_header(KEY, [b"GET / HTTP/1.1", b"", b""])


def test_body_that_does_not_unpickle_names_its_task() -> None:
    header = Header(Kind.TASK, 3, 1, 42)
    frames = seal(KEY, header, [b"not a pickle"])
    with pytest.raises(BodyError) as info:
        open_body(open_header(KEY, frames), frames)
    assert info.value.header.task_id == 42


def test_directions_do_not_share_kinds() -> None:
    assert not (TO_WORKER & TO_EXECUTOR)
    assert set(Kind) == TO_WORKER | TO_EXECUTOR | {Kind.API_DICT}  # API_DICT: executorlib.api, both ways


big_buffers = st.lists(st.integers(70_000, 140_000), min_size=1, max_size=3)


def _buffers(sizes: list[int]) -> list[pickle.PickleBuffer]:
    """Large buffers that pickle protocol 5 sends out of band (as it does numpy arrays)."""
    return [pickle.PickleBuffer(bytes([index % 251]) * size) for index, size in enumerate(sizes)]


@given(big_buffers)
def test_out_of_band_buffers_round_trip(sizes: list[int]) -> None:
    frames = seal(KEY, Header(Kind.RESULT, 1, 1, 1), pack_body(Result(_buffers(sizes))))
    assert len(frames) == 1 + len(sizes), "every large buffer travels in a frame of its own"
    received = _raw(frames)
    back = open_body(open_header(KEY, received), received)
    assert isinstance(back, Result)
    assert [bytes(b) for b in back.value] == [bytes(b.raw()) for b in _buffers(sizes)]


@given(big_buffers, st.data())
def test_buffers_cut_elsewhere_or_dropped_are_rejected(sizes: list[int], data: st.DataObject) -> None:
    frames = _raw(seal(KEY, Header(Kind.RESULT, 1, 1, 1), pack_body(Result(_buffers(sizes)))))
    joined = b"".join(frames[1:])
    if data.draw(st.booleans()) or len(frames) == 2:
        tampered = frames[:-1]  # one buffer short
    else:  # the same bytes, cut at other places
        cut = data.draw(st.integers(1, len(joined) - 1).filter(lambda c: c != len(frames[1])))
        tampered = [frames[0], joined[:cut], joined[cut:]] if len(frames) == 3 else [frames[0], joined]
    if [len(f) for f in tampered] == [len(f) for f in frames]:
        return
    with pytest.raises(ProtocolError):
        open_header(KEY, tampered)


def test_an_envelope_whose_sizes_disagree_with_its_header_is_rejected() -> None:
    frames = _raw(seal(KEY, Header(Kind.RESULT, 1, 1, 1), pack_body(Result("value"))))
    with pytest.raises(ProtocolError, match="sizes do not match"):
        open_header(KEY, [frames[0][:-1]])
    with pytest.raises(ProtocolError, match="sizes do not match"):
        open_header(KEY, [frames[0] + b"x"])
    with pytest.raises(ProtocolError, match="sizes do not match"):
        open_header(KEY, [frames[0], b"an extra frame"])


def test_a_task_sends_a_function_known_by_reference_as_those_bytes() -> None:
    pack_body(Task(referenced_task, (1,), {}))  # the first time cloudpickle decides; it goes by reference
    body = pack_body(Task(referenced_task, (1,), {}))
    assert type(pickle.loads(body[0])[0]) is bytes
    frames = _raw(seal(KEY, Header(Kind.TASK, 1, 1, 1), body))
    task = open_body(open_header(KEY, frames), frames)
    assert isinstance(task, Task) and task.fn is referenced_task and task.args == (1,)


def referenced_task(x: int) -> int:
    return x + 1


@given(st.tuples(values, values), st.dictionaries(st.text(max_size=3), values), st.none() | st.text(max_size=8))
def test_pack_task_is_pack_body_of_the_task(args: tuple[Any, ...], kwargs: dict[str, Any], log: str | None) -> None:
    from xl_comm.framing import pack_task

    for fn in (referenced_task, pow, _error):
        pack_task(fn, args, kwargs, log)  # once learnt, a function known by reference goes as its reference
        assert pack_task(fn, args, kwargs, log) == pack_body(Task(fn, args, kwargs, log))


@pytest.mark.parametrize("size", [10, 70_000, 300_000])
def test_received_zmq_frames_of_any_envelope_size_open(size: int) -> None:
    """Small envelopes are read as bytes, large ones (a long in-band stream) through a view of the frame."""
    import zmq

    header = Header(Kind.RESULT, 1, 1, 1)
    frames = [zmq.Frame(bytes(memoryview(f).cast("B"))) for f in seal(KEY, header, pack_body(Result("x" * size)))]
    assert open_header(KEY, frames) == header
    assert open_body(header, frames) == Result("x" * size)
    tampered = bytearray(frames[0].bytes)
    tampered[HEADER_BYTES + size // 2] ^= 1
    with pytest.raises(AuthenticationError):
        open_header(KEY, [zmq.Frame(bytes(tampered))])


@given(values, st.integers(1, 2**64 - 1))
def test_open_frames_returns_the_verified_body_unpickled_by_nobody(value: Any, seq: int) -> None:
    from xl_serial import dumps, loads

    header = Header(Kind.API_DICT, 0, seq, 0)
    frames = _raw(seal(KEY, header, dumps({"x": value})))
    opened, body = open_frames(KEY, frames)
    assert opened == header
    assert loads(body) == {"x": value}
    tampered = [frames[0][:-1] + bytes([frames[0][-1] ^ 1]), *frames[1:]]
    with pytest.raises(AuthenticationError):
        open_frames(KEY, tampered)

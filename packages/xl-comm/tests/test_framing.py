from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from hypothesis import given, settings
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


# -- large buffers: GMAC tags in the envelope's buffer table from FAST_MAC_MIN_BYTES on (see xl_comm.framing)


def _sizes_near_threshold() -> st.SearchStrategy[list[int]]:
    """One or two buffers that together hold a few bytes less or more than FAST_MAC_MIN_BYTES."""
    from xl_comm.framing import FAST_MAC_MIN_BYTES

    total = st.integers(FAST_MAC_MIN_BYTES - 3, FAST_MAC_MIN_BYTES + 3)
    one = total.map(lambda size: [size])
    two = st.tuples(total, st.integers(70_000, 1 << 20)).map(lambda pair: [pair[1], pair[0] - pair[1]])
    return one | two


class _Canary:
    """A value whose unpickling is recorded: a message that must be refused never gets this far."""

    unpickled: list[int] = []

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Canary.unpickled.append, (1,))


@settings(max_examples=20, deadline=None)
@given(_sizes_near_threshold())
def test_buffers_around_the_gmac_threshold_round_trip(sizes: list[int]) -> None:
    from xl_comm.framing import FAST_MAC_MIN_BYTES, MAC_BYTES, table_bytes

    frames = seal(KEY, Header(Kind.RESULT, 1, 1, 1), pack_body(Result(_buffers(sizes))))
    views = [memoryview(f.raw()) for f in frames[1:]]
    stream = len(frames[0]) - HEADER_BYTES - MAC_BYTES
    table = table_bytes(views) if sum(sizes) >= FAST_MAC_MIN_BYTES else 0
    assert stream - table == len(pack_body(Result(_buffers(sizes)))[0]), "a buffer table only from the threshold on"
    received = _raw(frames)
    back = open_body(open_header(KEY, received), received)
    assert isinstance(back, Result)
    assert [bytes(b) for b in back.value] == [bytes(b.raw()) for b in _buffers(sizes)]


@settings(max_examples=30, deadline=None)
@given(_sizes_near_threshold(), st.data())
def test_any_flipped_byte_of_a_large_message_is_rejected_before_unpickling(
    sizes: list[int], data: st.DataObject
) -> None:
    _Canary.unpickled.clear()
    body = pack_body(Result((_Canary(), _buffers(sizes))))
    frames = [bytearray(f) for f in _raw(seal(KEY, Header(Kind.RESULT, 1, 1, 1), body))]
    index = data.draw(st.integers(0, len(frames) - 1), label="frame")
    position = data.draw(st.integers(0, len(frames[index]) - 1), label="byte")
    frames[index][position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(ProtocolError):
        open_body(open_header(KEY, frames), frames)
    assert not _Canary.unpickled


def test_a_large_message_of_another_key_or_with_swapped_buffers_is_rejected() -> None:
    from xl_comm.framing import FAST_MAC_MIN_BYTES

    sizes = [FAST_MAC_MIN_BYTES, FAST_MAC_MIN_BYTES]
    frames = _raw(seal(new_key(), Header(Kind.RESULT, 1, 1, 1), pack_body(Result(_buffers(sizes)))))
    with pytest.raises(AuthenticationError):
        open_header(KEY, frames)
    frames = _raw(seal(KEY, Header(Kind.RESULT, 1, 1, 1), pack_body(Result(_buffers(sizes)))))
    with pytest.raises(AuthenticationError):
        open_header(KEY, [frames[0], frames[2], frames[1]])


def test_each_large_message_gets_its_own_nonce() -> None:
    """The one-time GMAC key comes from a fresh random nonce: the same buffers sealed twice get other tables."""
    from xl_comm.framing import FAST_MAC_MIN_BYTES, MAC_BYTES, NONCE_BYTES, table_bytes

    body = pack_body(Result(_buffers([FAST_MAC_MIN_BYTES])))
    envelopes = [bytes(seal(KEY, Header(Kind.RESULT, 1, 1, 1), body)[0]) for _ in range(2)]
    table = table_bytes([memoryview(body[1].raw())])
    stream_end = len(envelopes[0]) - MAC_BYTES - table
    tables = [envelope[stream_end : stream_end + table] for envelope in envelopes]
    assert tables[0][:NONCE_BYTES] != tables[1][:NONCE_BYTES]
    assert tables[0][-16:] != tables[1][-16:], "the tag of the same bytes differs under another one-time key"
    for envelope in envelopes:
        assert open_header(KEY, [envelope, body[1].raw().tobytes()]).kind is Kind.RESULT


def test_a_buffer_of_several_gmac_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buffers longer than one GMAC call takes (GMAC_CHUNK_BYTES, 1 GiB) get a tag per chunk; here the chunk is
    1000 bytes so that the test needs no gigabyte."""
    import xl_comm.framing as framing

    monkeypatch.setattr(framing, "GMAC_CHUNK_BYTES", 1000)
    monkeypatch.setattr(framing, "FAST_MAC_MIN_BYTES", 2000)
    payload = random.Random(7).randbytes(3500)  # 4 chunks, no two alike
    frames = _raw(seal(KEY, Header(Kind.RESULT, 1, 1, 1), [pickle.dumps(None), payload]))
    assert len(frames[0]) - framing.table_bytes([memoryview(payload)]) == HEADER_BYTES + 4 + framing.MAC_BYTES
    assert framing.table_bytes([memoryview(payload)]) == 16 + 8 + 1 + 4 * 16  # nonce, length, place, tags
    assert open_header(KEY, frames).kind is Kind.RESULT
    for position in (10, 1500, 2999, 3499):
        tampered = bytearray(frames[1])
        tampered[position] ^= 0x40
        with pytest.raises(AuthenticationError, match="GMAC tag"):
            open_header(KEY, [frames[0], bytes(tampered)])
    swapped = frames[1][1000:2000] + frames[1][:1000] + frames[1][2000:]
    with pytest.raises(AuthenticationError):
        open_header(KEY, [frames[0], swapped])

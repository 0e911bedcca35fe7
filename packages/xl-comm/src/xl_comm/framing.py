"""Messages to zmq frames and back, authenticated with a keyed BLAKE2b MAC over every frame (pure functions).

A message on the wire is ``[envelope, buffer...]``:

* envelope = header (36 bytes) + the pickle stream of the message + mac (32 bytes);
* header: magic ``XL``, protocol version, kind, worker id (u32), sequence number (u64), task id (u64), the
  number of buffers (u32) and the length of the stream (u64);
* mac: keyed BLAKE2b-256 over the header, the stream, and the length and bytes of every buffer;
* buffers: the message's large out-of-band pickle-5 buffers, one frame each, never copied into the envelope.

Header and stream are adjacent and the mac trails them, so a message without buffers (nearly every task and
reply) is authenticated by one hash call over one contiguous slice; the header's counts make the MAC's input
unambiguous. One envelope frame instead of separate header, mac and stream frames: each zmq frame is a call of
its own on both ends, and small messages are all overhead.

The MAC is checked before a single byte of the body is unpickled, so a peer without the executor's key can
never get a pickle loaded. Sequence numbers only grow per sender, which stops replays within a session; the
key is per executor, which stops them across sessions.
"""

from __future__ import annotations

import pickle
import struct
from _blake2 import blake2b  # hashlib would load OpenSSL too: milliseconds on every worker start
from _operator import _compare_digest as compare_digest
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

from xl_serial import Frame, dumps, function_stream, loads, resolve_function
from zmq import Frame as ZmqFrame

from xl_comm.messages import MESSAGE_CLASSES, Kind, Message, Task

PROTOCOL_VERSION = 3  # 3: Result carries the function's runtime
MAGIC = b"XL"
KEY_BYTES = 32
_HEADER = struct.Struct("!2sBBIQQIQ")
HEADER_BYTES = _HEADER.size
_LENGTH = struct.Struct("!Q")
MAC_BYTES = 32
_ENVELOPE = HEADER_BYTES + MAC_BYTES
#: Received envelopes up to this size are copied into bytes (one C call; slicing bytes is cheaper than views).
_COPY_ENVELOPE_MAX = 65536
_KINDS = {int(kind): kind for kind in Kind}  # a dict lookup: calling the enum costs two Python-level calls


class ProtocolError(Exception):
    """A frame list that is not a message of this protocol (wrong shape, magic or version)."""


class AuthenticationError(ProtocolError):
    """A message whose MAC does not verify: it did not come from a holder of this executor's key."""


class BodyError(Exception):
    """An authenticated message whose body could not be unpickled; ``header`` names the task it belongs to."""

    def __init__(self, header: Header, cause: BaseException) -> None:
        super().__init__(f"cannot unpickle the body of a {header.kind.name} message: {cause!r}")
        self.header = header

    def reportable(self) -> Exception:
        """What the message's Future fails with: the unpickling error itself when it is an Exception; this error
        for anything else (a ``__reduce__`` raising SystemExit or KeyboardInterrupt must not end the receiver)."""
        cause = self.__cause__
        return cause if isinstance(cause, Exception) else self


class Header(NamedTuple):
    """The fixed fields of a message, unpacked from its first bytes (a NamedTuple: built in one call, where
    a frozen dataclass sets each field through object.__setattr__; this runs twice per task on each end)."""

    kind: Kind
    worker_id: int
    seq: int
    task_id: int


def new_key() -> bytes:
    """A fresh random per-executor key."""
    import secrets

    return secrets.token_bytes(KEY_BYTES)


def pack_body(message: Message) -> list[Frame]:
    """Pickle a message body. Raises whatever pickling raises (the caller fails the one task concerned).

    The body is the tuple of the message's fields (the header carries its kind): pickling a dataclass costs
    two to three times as much, on every task, on both ends. A Task's function is sent as bytes when xl_serial
    has them (its reference, or its by-value pickle kept while the function is unchanged: see
    xl_serial.function_stream); _decode turns them back, and the worker keeps the function it got.
    """
    if type(message) is Task:
        return pack_task(message.fn, message.args, message.kwargs, message.error_log_file)
    getter = _FIELD_GETTERS.get(type(message))
    if getter is None:
        getter = _FIELD_GETTERS[type(message)] = _field_getter(message.__slots__)
    return dumps(getter(message))


def pack_task(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], error_log_file: str | None = None
) -> list[Frame]:
    """``pack_body(Task(fn, args, kwargs, error_log_file))``, the same frames, without building the Task first:
    the executor packs one per submit, on the caller's critical path."""
    stream = function_stream(fn)
    return dumps((fn if stream is None else stream, args, kwargs, error_log_file))


_FIELD_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _field_getter(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A C-level reader of a message's fields as a tuple (a generator per message costs a Python frame)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        only = attrgetter(names[0])
        return lambda message: (only(message),)
    return lambda message: ()


def seal(key: bytes, header: Header, body: Sequence[Frame]) -> list[Frame]:
    """The frames to send: the envelope (header, stream, MAC), then the out-of-band buffers."""
    stream = body[0]
    buffers = body[1:]
    if type(stream) is not bytes:
        stream = _view(stream)
    head = _HEADER.pack(
        MAGIC, PROTOCOL_VERSION, header.kind, header.worker_id, header.seq, header.task_id, len(buffers), len(stream)
    )
    mac = _keyed(key)
    mac.update(head)
    mac.update(stream)
    if buffers:
        _mac_buffers(mac, buffers)
    return [b"".join((head, stream, mac.digest())), *buffers]


def open_header(key: bytes, frames: Sequence[Any]) -> Header:
    """Check shape, version and MAC of received frames; return the header. Nothing is unpickled here."""
    if not frames:
        raise ProtocolError("an empty message")
    envelope = _envelope(frames[0])
    size = len(envelope)
    if size < _ENVELOPE or envelope[:2] != MAGIC:
        raise ProtocolError("not an xl-comm message (bad header)")
    _, version, kind, worker_id, seq, task_id, buffers, stream = _HEADER.unpack_from(envelope)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"peer speaks xl-comm protocol version {version}, this side speaks {PROTOCOL_VERSION}: "
            "install the same xl-comm version for the executor and the workers"
        )
    if size != _ENVELOPE + stream or len(frames) != buffers + 1:
        raise ProtocolError("not an xl-comm message (its sizes do not match its header)")
    mac = _keyed(key)
    mac.update(envelope[:-MAC_BYTES])
    if buffers:
        _mac_buffers(mac, frames[1:])
    if not compare_digest(mac.digest(), envelope[-MAC_BYTES:]):
        raise AuthenticationError("message MAC does not verify: sender does not hold this executor's key")
    message_kind = _KINDS.get(kind)
    if message_kind is None:
        raise ProtocolError(f"unknown message kind {kind}")
    return Header(message_kind, worker_id, seq, task_id)


def open_frames(key: bytes, frames: Sequence[Any]) -> tuple[Header, list[Any]]:
    """Verify frames like :func:`open_header`; return the header and the body frames (the pickle stream, then
    the out-of-band buffers) for a receiver that unpickles them itself. Nothing is unpickled here."""
    header = open_header(key, frames)
    return header, [_stream(frames[0]), *frames[1:]]


def open_body(header: Header, frames: Sequence[Any]) -> Message:
    """Unpickle the body of frames whose header already verified; BodyError if that fails."""
    return _decode(header, [_stream(frames[0]), *frames[1:]])


def _decode(header: Header, body: Sequence[Any]) -> Message:
    try:
        fields = loads(body)
        if header.kind is Kind.TASK and type(fields[0]) is bytes:  # a function sent as its pickle (pack_task)
            fields = (resolve_function(fields[0]), *fields[1:])
        return MESSAGE_CLASSES[header.kind](*fields)
    # BaseException: a __reduce__ may raise SystemExit or KeyboardInterrupt; it still fails only this message.
    except BaseException as problem:  # any unpickling failure belongs to this one message
        raise BodyError(header, problem) from problem


# -- batches: many small messages in one, because per-message costs (zmq's threads, syscalls, the MAC) would
# -- otherwise dominate tiny tasks. Each member is still a typed message, pickled on its own.


def pack_batch(members: Sequence[tuple[Kind, int, Sequence[Frame]]]) -> list[Frame]:
    """The body of a BATCH or REPLIES message from ``(kind, task_id, body frames)`` of its members.

    Frames: an index (kind, task id, stream length, buffer count per member), then all members' pickle streams
    joined in one frame, then every member's out-of-band buffers, in order.
    """
    index = [(int(kind), task_id, _view(body[0]).nbytes, len(body) - 1) for kind, task_id, body in members]
    streams = b"".join(_view(body[0]) for _, _, body in members)
    return [pickle.dumps(index, protocol=5), streams, *(buffer for _, _, body in members for buffer in body[1:])]


def open_batch(header: Header, frames: Sequence[Any]) -> list[tuple[Header, Message | BodyError]]:
    """The members of a verified BATCH or REPLIES message: a header (kind and task id of the member) and the
    decoded message, or the BodyError of a member that does not unpickle (it fails that member only)."""
    try:
        index = pickle.loads(_stream(frames[0]))
        streams = _view(frames[1])
    except BaseException as problem:  # a malformed index (from a key holder) fails the whole batch
        raise BodyError(header, problem) from problem
    members: list[tuple[Header, Message | BodyError]] = []
    offset, buffer_at = 0, 2
    for kind, task_id, length, buffers in index:
        member = Header(_KINDS[kind], header.worker_id, header.seq, task_id)
        body = [streams[offset : offset + length], *frames[buffer_at : buffer_at + buffers]]
        offset, buffer_at = offset + length, buffer_at + buffers
        try:
            members.append((member, _decode(member, body)))
        except BodyError as problem:
            members.append((member, problem))
    return members


_KEYED: dict[bytes, Any] = {}


def _keyed(key: bytes) -> Any:
    """A fresh BLAKE2b state keyed with ``key``: a copy of one made once per key, which skips the key's block."""
    state = _KEYED.get(key)
    if state is None:
        if len(_KEYED) > 64:  # keys are per executor: a long-lived process may see many, one at a time
            _KEYED.clear()
        state = _KEYED[key] = blake2b(key=key, digest_size=MAC_BYTES)
    return state.copy()


def _mac_buffers(mac: Any, buffers: Sequence[Any]) -> None:
    for frame in buffers:
        view = _view(frame)
        mac.update(_LENGTH.pack(view.nbytes))
        mac.update(view)


def _envelope(frame: Any) -> bytes | memoryview:
    """The first frame as bytes when small (zmq caches the copy), else as a view of its buffer."""
    if type(frame) is bytes:
        return frame
    if type(frame) is ZmqFrame and len(frame) <= _COPY_ENVELOPE_MAX:
        return frame.bytes
    return _view(frame)


def _stream(frame: Any) -> bytes | memoryview:
    """The pickle stream inside an envelope whose header verified (a copy only when the envelope is small)."""
    return _envelope(frame)[HEADER_BYTES:-MAC_BYTES]


def _view(frame: Any) -> memoryview:
    if type(frame) is bytes:
        return memoryview(frame)
    buffer = getattr(frame, "buffer", None)  # zmq.Frame
    if buffer is None and hasattr(frame, "raw"):  # pickle.PickleBuffer
        return frame.raw()  # type: ignore[no-any-return]
    return memoryview(buffer if buffer is not None else frame).cast("B")

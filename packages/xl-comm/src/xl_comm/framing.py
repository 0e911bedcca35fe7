"""Messages to zmq frames and back, authenticated with a keyed BLAKE2b MAC over every frame (pure functions).

A message on the wire is ``[envelope, buffer...]``:

* envelope = header (36 bytes) + the pickle stream of the message + buffer table + mac (32 bytes);
* header: magic ``XL``, protocol version, kind, worker id (u32), sequence number (u64), task id (u64), the
  number of buffers (u32) and the length of the stream (u64);
* buffers: the message's large out-of-band pickle-5 buffers, one frame each, never copied into the envelope, or,
  with a mailbox (a peer on this host), in a sealed memfd whose fd travelled ahead (see :mod:`xl_comm.shared`);
* buffer table: empty unless the buffers together hold at least ``FAST_MAC_MIN_BYTES`` (a rule of the protocol,
  so both ends agree without a flag): then a random 16-byte nonce, and per buffer its length (u64), its place
  (u8: a frame, or shared memory) and one AES-256-GMAC tag (16 bytes) per ``GMAC_CHUNK_BYTES`` of it;
* mac: keyed BLAKE2b-256 over the header, the stream, and either the length and bytes of every buffer (small
  buffers) or the buffer table (large buffers).

Header and stream are adjacent and the mac trails them, so a message without buffers (nearly every task and
reply) is authenticated by one hash call over one contiguous slice; the header's counts make the MAC's input
unambiguous. One envelope frame instead of separate header, mac and stream frames: each zmq frame is a call of
its own on both ends, and small messages are all overhead.

Large buffers: BLAKE2b runs at 0.84 GB/s on this project's 2-core test machine (AMD EPYC with AVX-512, VAES and
VPCLMULQDQ; OpenSSL 4 inside cryptography 50), and a round trip hashes each byte four times (seal and check, both
ways): 0.5 s of a 100 MB round trip. Measured there, one thread, 100 MB: keyed BLAKE2b 0.84 GB/s, SHA-256
(SHA-NI) 1.78, keyed BLAKE3 4.7 (9.1 on both cores), Poly1305 12.9, AES-256-GMAC 18.7 GB/s (memcpy: 9.4). GMAC
is the fastest, releases the GIL, and costs one lazy import of ``cryptography`` (about 20 ms, once per process,
on the first large message; Poly1305 about 5 ms, BLAKE3 3 ms): so BLAKE2b stays for the envelope and small
buffers (no import on a worker's start), and GMAC takes buffers from 4 MiB, where its import costs less than
BLAKE2b would on the message itself. GMAC is only safe with a nonce never reused under a key: each message
derives a one-time AES key from the executor's key and its random nonce (BLAKE2b), and each chunk of each buffer
gets its own GCM nonce (buffer index, chunk index) under that key.

A shared buffer's tags are checked on the receiver's copy-on-write mapping of the sealed memfd: the seals make
its bytes immutable, so what was checked is what gets unpickled.

Every MAC and tag is checked before a single byte of the body is unpickled, so a peer without the executor's key
can never get a pickle loaded. Sequence numbers only grow per sender, which stops replays within a session; the
key is per executor, which stops them across sessions.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
from _blake2 import blake2b  # hashlib would load OpenSSL too: milliseconds on every worker start
from _operator import _compare_digest as compare_digest
from collections.abc import Callable, Collection, Mapping, Sequence
from operator import attrgetter
from typing import Any, NamedTuple, Protocol

from xl_serial import Frame, dumps, function_stream, loads, resolve_function
from zmq import Frame as ZmqFrame

from xl_comm.messages import MESSAGE_CLASSES, Kind, Message, Task
from xl_comm.shared import MAX_SHARED_BUFFERS, SHARED_MIN_BYTES, SharedMemoryError, map_buffers, share

PROTOCOL_VERSION = 4  # 4: a buffer travels in a frame or in shared memory (its place in the buffer table)
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
#: Buffers that together hold at least this many bytes are authenticated by AES-GMAC tags in the buffer table
#: (see the module's docstring); part of the protocol: both ends must agree on it.
FAST_MAC_MIN_BYTES = 4 << 20
#: Largest slice of a buffer under one GMAC tag (cryptography takes at most 2**31 - 1 bytes per call; smaller
#: chunks let a receiver check a large buffer on two threads).
GMAC_CHUNK_BYTES = 16 << 20
#: Buffers that together hold at least this many bytes are checked on two threads by the receiver.
PARALLEL_GMAC_MIN_BYTES = 32 << 20
NONCE_BYTES = 16
TAG_BYTES = 16
_CHUNK_NONCE = struct.Struct("!IQ")  # 12 bytes: buffer index, chunk index
_ONE_TIME_KEY_DOMAIN = b"xl-comm one-time GMAC key"  # never the start of an envelope (which starts with b"XL")
_PLACE = struct.Struct("!QB")  # a buffer table's entry: the buffer's length, and where it travels
_INLINE = 0  # in a frame of the message
_SHARED = 1  # in a sealed memfd whose fd travelled ahead, through the peer's mailbox (xl_comm.shared)


class ProtocolError(Exception):
    """A frame list that is not a message of this protocol (wrong shape, magic or version)."""


class LostBuffersError(ProtocolError):
    """An authentic message whose shared buffers did not arrive or cannot be mapped: its ``header`` is known (the
    MAC verified), so the receiver answers for its task instead of dropping it (a dropped result would leave its
    Future waiting)."""

    def __init__(self, header: Header, problem: str) -> None:
        super().__init__(problem)
        self.header = header


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


class Mailbox(Protocol):
    """Where a message's shared buffers travel beside it (see :mod:`xl_comm.shared`): ``send`` hands the fds of
    the memfds for the message with ``nonce`` to the peer ``worker_id`` (False: they could not go, the buffers
    travel as frames); ``take`` returns the fds that arrived for a received message."""

    def send(self, worker_id: int, nonce: bytes, fds: Sequence[int]) -> bool: ...

    def take(self, worker_id: int, nonce: bytes) -> list[int]: ...


def seal(
    key: bytes,
    header: Header,
    body: Sequence[Frame],
    mailbox: Mailbox | None = None,
    prepared: Prepared | None = None,
) -> list[Frame]:
    """The frames to send: the envelope (header, stream, buffer table, MAC), then the out-of-band buffers that
    travel as frames. With a ``mailbox``, buffers of at least SHARED_MIN_BYTES in a message on the GMAC path go
    through sealed shared memory instead (their fds are sent here, before the frames are). ``prepared``: the
    memfds and tags of this body made earlier by :func:`prepare` (outside a lock, say); the caller closes it."""
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
    if not buffers:
        return [b"".join((head, stream, mac.digest())), *buffers]
    views = [_view(frame) for frame in buffers]
    if not _fast(views):
        _mac_buffers(mac, views)
        return [b"".join((head, stream, mac.digest())), *buffers]
    own = prepared is None
    if prepared is None:
        prepared = prepare(key, body, share_buffers=mailbox is not None)
    assert prepared is not None  # the GMAC path
    try:
        shared = prepared.deliver(mailbox, header.worker_id) if mailbox is not None else frozenset()
        table = _table(prepared.nonce, views, prepared.tags, shared)
    finally:
        if own:
            prepared.close()
    mac.update(table)
    envelope = b"".join((head, stream, table, mac.digest()))
    if shared:
        return [envelope, *(frame for index, frame in enumerate(buffers) if index not in shared)]
    return [envelope, *buffers]


class Prepared:
    """A body's GMAC tags under a fresh nonce, and the sealed memfds of its large buffers (if any could be made):
    the costly part of sealing a message with large buffers, which needs neither its header nor a socket.
    ``close()`` closes the memfds this side still holds (the ones sent live on in flight)."""

    def __init__(self, nonce: bytes, tags: list[bytes], chosen: list[int], fds: list[int] | None) -> None:
        self.nonce = nonce
        self.tags = tags
        self._chosen = chosen
        self._fds = fds

    def deliver(self, mailbox: Mailbox, worker_id: int) -> frozenset[int]:
        """Send the memfds to ``worker_id``'s side; the indices of the buffers that went (none: frames)."""
        if not self._fds or not mailbox.send(worker_id, self.nonce, self._fds):
            return frozenset()
        return frozenset(self._chosen)

    def close(self) -> None:
        fds, self._fds = self._fds, None
        for fd in fds or ():
            os.close(fd)


def prepare(key: bytes, body: Sequence[Frame], share_buffers: bool = True) -> Prepared | None:
    """The tags and (``share_buffers``) memfds of a body whose buffers take the GMAC path, else None. The memfds
    are written on a helper thread while this one computes the tags over the same bytes: both release the GIL."""
    views = [_view(frame) for frame in body[1:]]
    if not views or not _fast(views):
        return None
    nonce = os.urandom(NONCE_BYTES)
    chosen = [index for index, view in enumerate(views) if view.nbytes >= SHARED_MIN_BYTES]
    if not share_buffers or not chosen or len(chosen) > MAX_SHARED_BUFFERS:
        return Prepared(nonce, gmac_tags(key, nonce, views), [], None)
    made: list[list[int] | None] = []
    writer = threading.Thread(
        target=lambda: made.append(share([views[index] for index in chosen])), name="xl-comm-share", daemon=True
    )
    writer.start()
    try:
        tags = gmac_tags(key, nonce, views)
    finally:
        writer.join()
    return Prepared(nonce, tags, chosen, made[0] if made else None)


def open_header(key: bytes, frames: Sequence[Any]) -> Header:
    """Check shape, version and MAC of received frames; return the header. Nothing is unpickled here. A message
    whose buffers travel through shared memory needs :func:`open_message`."""
    return open_message(key, frames)[0]


def open_message(key: bytes, frames: Sequence[Any], mailbox: Mailbox | None = None) -> tuple[Header, list[Any]]:
    """Check shape, version, MAC and buffer tags of received frames; return the header and the frames with every
    buffer in its place (shared buffers mapped from the fds ``mailbox`` received), for :func:`open_body` or
    :func:`open_batch`. Nothing is unpickled here."""
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
    if buffers:
        header = Header(_kind(kind), worker_id, seq, task_id)
        return header, _check_with_buffers(key, header, envelope, stream, buffers, frames, mailbox)
    if len(frames) != 1 or size != _ENVELOPE + stream:
        raise ProtocolError("not an xl-comm message (its sizes do not match its header)")
    mac = _keyed(key)
    mac.update(envelope[:-MAC_BYTES])
    if not compare_digest(mac.digest(), envelope[-MAC_BYTES:]):
        raise AuthenticationError("message MAC does not verify: sender does not hold this executor's key")
    return Header(_kind(kind), worker_id, seq, task_id), list(frames)


def _kind(kind: int) -> Kind:
    message_kind = _KINDS.get(kind)
    if message_kind is None:
        raise ProtocolError(f"unknown message kind {kind}")
    return message_kind


def _check_with_buffers(
    key: bytes,
    header: Header,
    envelope: bytes | memoryview,
    stream: int,
    buffers: int,
    frames: Sequence[Any],
    mailbox: Mailbox | None,
) -> list[Any]:
    """The sizes, the MAC and (for large buffers) the GMAC tags of a message with out-of-band buffers; the frames
    with shared buffers mapped in place. The envelope's MAC, which covers the buffer table, is checked first: a
    foreign message is refused before its buffers are read or a single fd is taken."""
    table_end = len(envelope) - MAC_BYTES
    if table_end < HEADER_BYTES + stream:
        raise ProtocolError("not an xl-comm message (its sizes do not match its header)")
    mac = _keyed(key)
    mac.update(envelope[:table_end])
    if table_end == HEADER_BYTES + stream:  # no buffer table: small buffers, all in frames, under the MAC
        views = [_view(frame) for frame in frames[1:]]
        if len(views) != buffers or _fast(views):
            raise ProtocolError("not an xl-comm message (its sizes do not match its header)")
        _mac_buffers(mac, views)
        if not compare_digest(mac.digest(), envelope[table_end:]):
            raise AuthenticationError("message MAC does not verify: sender does not hold this executor's key")
        return list(frames)
    if not compare_digest(mac.digest(), envelope[table_end:]):
        raise AuthenticationError("message MAC does not verify: sender does not hold this executor's key")
    table = bytes(envelope[HEADER_BYTES + stream : table_end])
    layout = table_layout(table, buffers)  # authenticated: from a holder of the key
    inline = iter(frames[1:])
    placed: list[memoryview | None] = [None if shared else _view(next(inline, b"")) for _, shared in layout]
    if len(frames) - 1 != sum(1 for _, shared in layout if not shared) or any(
        view is not None and view.nbytes != length for view, (length, _) in zip(placed, layout, strict=True)
    ):
        raise ProtocolError("not an xl-comm message (its sizes do not match its header)")
    if sum(length for length, _ in layout) < FAST_MAC_MIN_BYTES:
        raise ProtocolError("not an xl-comm message (a buffer table for small buffers)")
    shared_at = [index for index, (_, shared) in enumerate(layout) if shared]
    if shared_at:
        if mailbox is None:
            raise ProtocolError("a message with shared-memory buffers arrived where no mailbox can receive them")
        nonce = table[:NONCE_BYTES]
        try:
            mapped = map_buffers(mailbox.take(header.worker_id, nonce), [layout[index][0] for index in shared_at])
        except SharedMemoryError as problem:
            raise LostBuffersError(header, f"the shared buffers of this message cannot be read: {problem}") from None
        for index, view in zip(shared_at, mapped, strict=True):
            placed[index] = view
    full = [view for view in placed if view is not None]
    nonce = table[:NONCE_BYTES]
    tags = gmac_tags(key, nonce, full, parallel=sum(length for length, _ in layout) >= PARALLEL_GMAC_MIN_BYTES)
    if not compare_digest(_table(nonce, full, tags, frozenset(shared_at)), table):
        raise AuthenticationError("a buffer's GMAC tag does not verify: it was changed on the way")
    if not shared_at:
        return list(frames)
    return [frames[0], *full]


def table_layout(table: bytes, buffers: int) -> list[tuple[int, bool]]:
    """(length, shared) of each buffer in a buffer table (pure); ProtocolError unless it is exactly that."""
    layout: list[tuple[int, bool]] = []
    offset = NONCE_BYTES
    for _ in range(buffers):
        if offset + _PLACE.size > len(table):
            raise ProtocolError("not an xl-comm message (its buffer table is cut short)")
        length, place = _PLACE.unpack_from(table, offset)
        if place not in (_INLINE, _SHARED):
            raise ProtocolError(f"not an xl-comm message (unknown buffer place {place})")
        layout.append((length, place == _SHARED))
        offset += _PLACE.size + TAG_BYTES * _chunks(length)
    if offset != len(table):
        raise ProtocolError("not an xl-comm message (its sizes do not match its header)")
    return layout


def open_frames(key: bytes, frames: Sequence[Any], mailbox: Mailbox | None = None) -> tuple[Header, list[Any]]:
    """Verify frames like :func:`open_message`; return the header and the body frames (the pickle stream, then
    the out-of-band buffers) for a receiver that unpickles them itself. Nothing is unpickled here."""
    header, opened = open_message(key, frames, mailbox)
    return header, [_stream(opened), *opened[1:]]


def open_received(
    key: bytes, frames: Sequence[Any], mailbox: Mailbox | None = None
) -> tuple[Header, list[Any], LostBuffersError | None]:
    """:func:`open_message` for a receiver that answers for every authentic task: a message whose shared buffers
    are lost comes back with no frames and the error third, which :func:`open_body` then raises as a BodyError
    (its task fails, rather than its Future waiting for an answer that was dropped)."""
    try:
        header, opened = open_message(key, frames, mailbox)
    except LostBuffersError as problem:
        return problem.header, [], problem
    return header, opened, None


def open_body(header: Header, frames: Sequence[Any], lost: LostBuffersError | None = None) -> Message:
    """Unpickle the body of frames whose header already verified; BodyError if that fails or ``lost`` says the
    body's buffers are gone."""
    if lost is not None:
        raise BodyError(header, lost) from lost
    return _decode(header, [_stream(frames), *frames[1:]])


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
        index = pickle.loads(_stream(frames))
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


def _mac_buffers(mac: Any, views: Sequence[memoryview]) -> None:
    for view in views:
        mac.update(_LENGTH.pack(view.nbytes))
        mac.update(view)


def _fast(views: Sequence[memoryview]) -> bool:
    """Whether these buffers are authenticated by GMAC tags (the protocol's rule, applied by both ends)."""
    return sum(view.nbytes for view in views) >= FAST_MAC_MIN_BYTES


def table_bytes(views: Sequence[memoryview]) -> int:
    """The size of the buffer table of these buffers (when they take the GMAC path)."""
    return NONCE_BYTES + sum(_PLACE.size + TAG_BYTES * _chunks(view.nbytes) for view in views)


def _chunks(nbytes: int) -> int:
    return max(1, -(-nbytes // GMAC_CHUNK_BYTES))


def buffer_table(key: bytes, nonce: bytes, views: Sequence[memoryview], shared: Collection[int] = frozenset()) -> bytes:
    """``nonce``, then per buffer its length, its place (a frame, or shared memory: the indices in ``shared``) and
    the GMAC tag of each of its chunks, under the one-time key that ``key`` and ``nonce`` give (pure: the sender
    writes it into the envelope, the receiver computes it again over what it received or mapped)."""
    return _table(nonce, views, gmac_tags(key, nonce, views), shared)


def _table(nonce: bytes, views: Sequence[memoryview], tags: Sequence[bytes], shared: Collection[int]) -> bytes:
    parts = [nonce]
    at = 0
    for index, view in enumerate(views):
        parts.append(_PLACE.pack(view.nbytes, _SHARED if index in shared else _INLINE))
        chunks = _chunks(view.nbytes)
        parts.extend(tags[at : at + chunks])
        at += chunks
    return b"".join(parts)


def gmac_tags(key: bytes, nonce: bytes, views: Sequence[memoryview], parallel: bool = False) -> list[bytes]:
    """The GMAC tag of each chunk of each buffer, in order, under the one-time key of ``key`` and ``nonce``.
    ``parallel``: half of the chunks on a helper thread (a receiver's mapping is read for the first time here, and
    its page faults cost twice the MAC itself: two cores take them in half the time)."""
    one_time = _keyed(key)
    one_time.update(_ONE_TIME_KEY_DOMAIN)
    one_time.update(nonce)
    gmac = _aes_gcm()(one_time.digest())
    jobs = [
        (_CHUNK_NONCE.pack(index, chunk), view[chunk * GMAC_CHUNK_BYTES : (chunk + 1) * GMAC_CHUNK_BYTES])
        for index, view in enumerate(views)
        for chunk in range(_chunks(view.nbytes))
    ]

    def run(part: Sequence[tuple[bytes, memoryview]]) -> list[bytes]:
        # empty plaintext, the buffer as associated data: the 16-byte tag alone, a GMAC
        return [gmac.encrypt(chunk_nonce, b"", data) for chunk_nonce, data in part]

    if not parallel or len(jobs) < 2:
        return run(jobs)
    odd: list[list[bytes]] = []
    helper = threading.Thread(target=lambda: odd.append(run(jobs[1::2])), name="xl-comm-gmac", daemon=True)
    helper.start()
    try:
        even = run(jobs[0::2])
    finally:
        helper.join()
    if not odd:  # the helper failed (it said why on stderr): do its half here
        odd.append(run(jobs[1::2]))
    tags = [b""] * len(jobs)
    tags[0::2], tags[1::2] = even, odd[0]
    return tags


_AESGCM: Any = None


def _aes_gcm() -> Any:
    """cryptography's AESGCM class, imported on the first large message: the import costs about 20 ms, which a
    worker's start need not pay."""
    global _AESGCM
    if _AESGCM is None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        _AESGCM = AESGCM
    return _AESGCM


def _envelope(frame: Any) -> bytes | memoryview:
    """The first frame as bytes when small (zmq caches the copy), else as a view of its buffer."""
    if type(frame) is bytes:
        return frame
    if type(frame) is ZmqFrame and len(frame) <= _COPY_ENVELOPE_MAX:
        return frame.bytes
    return _view(frame)


def _stream(frames: Sequence[Any]) -> bytes | memoryview:
    """The pickle stream inside the envelope of frames whose header verified (a copy only when the envelope is
    small). Without buffers there is no buffer table, so the stream is all between header and MAC."""
    envelope = _envelope(frames[0])
    if len(frames) == 1:
        return envelope[HEADER_BYTES:-MAC_BYTES]
    (length,) = _LENGTH.unpack_from(envelope, HEADER_BYTES - _LENGTH.size)  # the header's last field
    return envelope[HEADER_BYTES : HEADER_BYTES + length]


def _view(frame: Any) -> memoryview:
    if type(frame) is bytes:
        return memoryview(frame)
    buffer = getattr(frame, "buffer", None)  # zmq.Frame
    if buffer is None and hasattr(frame, "raw"):  # pickle.PickleBuffer
        return frame.raw()  # type: ignore[no-any-return]
    return memoryview(buffer if buffer is not None else frame).cast("B")

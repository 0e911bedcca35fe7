"""Large buffers through sealed shared memory (xl_comm.shared): the seals, the buffer table's places, tampering
anywhere (envelope or shared memory) refused before anything is unpickled, the fallbacks, and real workers."""

from __future__ import annotations

import fcntl
import gc
import mmap
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from typing import Any

import pytest
import shm_tasks
from comm_helpers import Recorder, start_worker
from hypothesis import given, settings
from hypothesis import strategies as st
from xl_comm import framing
from xl_comm.framing import (
    AuthenticationError,
    Header,
    ProtocolError,
    buffer_table,
    new_key,
    open_body,
    open_message,
    pack_body,
    prepare,
    seal,
    table_layout,
)
from xl_comm.hub import Hub
from xl_comm.messages import Failure, Kind, Result, Task
from xl_comm.shared import (
    REQUIRED_SEALS,
    SHARED_MIN_BYTES,
    SharedMemoryError,
    available,
    mailbox_name,
    map_sealed,
    write_sealed,
)

KEY = new_key()
SIZE = SHARED_MIN_BYTES  # the smallest buffer that goes through shared memory


class LocalMailbox:
    """Both ends of a mailbox in this process: the fds a sender hands over are duplicated (as SCM_RIGHTS would
    do) and wait for the receiver under their nonce. ``swap`` replaces what arrives, as an attacker would."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.waiting: dict[bytes, list[int]] = {}
        self.nonce = b""

    def send(self, worker_id: int, nonce: bytes, fds: Sequence[int]) -> bool:
        if not self.accept:
            return False
        self.waiting[nonce] = [os.dup(fd) for fd in fds]
        self.nonce = nonce
        return True

    def take(self, worker_id: int, nonce: bytes) -> list[int]:
        if nonce not in self.waiting:
            raise SharedMemoryError("nothing arrived")
        return self.waiting.pop(nonce)

    def swap(self, fds: list[int]) -> None:
        for fd in self.waiting.pop(self.nonce, []):
            os.close(fd)
        self.waiting[self.nonce] = fds

    def close(self) -> None:
        for fds in self.waiting.values():
            for fd in fds:
                os.close(fd)
        self.waiting.clear()


UNPICKLED: list[str] = []


def _sing(name: str) -> str:
    UNPICKLED.append(name)
    return name


class Canary:
    """Records that it was unpickled: a refused message must leave it silent."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_sing, ("canary",))


def _payload(seed: int = 1) -> bytes:
    return bytes((seed + index) % 251 for index in range(251)) * (SIZE // 251 + 1)


def _receive(frames: Sequence[Any], mailbox: LocalMailbox | None) -> Any:
    """What a hub or worker does: verify, then unpickle."""
    header, opened = open_message(KEY, frames, mailbox)
    return open_body(header, opened)


def _sealed_message(mailbox: LocalMailbox, data: bytes) -> list[Any]:
    body = pack_body(Result((Canary(), pickle.PickleBuffer(data), pickle.PickleBuffer(b"small" * 20_000))))
    frames = seal(KEY, Header(Kind.RESULT, 3, 1, 7), body, mailbox)
    return [bytes(memoryview(frame).cast("B")) for frame in frames]


def _memfds() -> int:
    gc.collect()  # a mapping lives until its last view is collected
    return shm_tasks.memfds()


# -- pure parts


@given(st.text(alphabet="abcdef0123456789-", min_size=1, max_size=40))
def test_the_mailbox_is_named_after_the_abstract_address(suffix: str) -> None:
    name = mailbox_name(f"ipc://@{suffix}")
    assert name == b"\0" + suffix.encode() + b"-shm"
    assert available(f"ipc://@{suffix}") == (os.environ.get("XL_PORTABLE", "") == "")


def test_no_mailbox_for_a_tcp_address() -> None:
    assert not available("tcp://127.0.0.1:5555")
    with pytest.raises(ValueError, match="abstract unix address"):
        mailbox_name("tcp://127.0.0.1:5555")


@given(
    st.lists(st.tuples(st.integers(0, 3000), st.booleans()), min_size=1, max_size=5),
    st.binary(min_size=16, max_size=16),
)
def test_a_buffer_table_reads_back_as_each_buffers_length_and_place(
    buffers: list[tuple[int, bool]], nonce: bytes
) -> None:
    views = [memoryview(bytes(size)) for size, _ in buffers]
    shared = frozenset(index for index, (_, place) in enumerate(buffers) if place)
    table = buffer_table(KEY, nonce, views, shared)
    assert table_layout(table, len(buffers)) == buffers
    with pytest.raises(ProtocolError):
        table_layout(table[:-1], len(buffers))
    with pytest.raises(ProtocolError):
        table_layout(table + b"\0", len(buffers))


# -- seals and mappings


def test_a_sealed_memfd_cannot_be_changed_even_by_its_writer() -> None:
    assert REQUIRED_SEALS == fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
    fd = write_sealed(memoryview(b"x" * 8192))
    try:
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & REQUIRED_SEALS == REQUIRED_SEALS
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"y", 0)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 4096)
        with pytest.raises(PermissionError):
            mmap.mmap(fd, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(PermissionError):  # F_SEAL_SEAL: the seals stay
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)
    finally:
        os.close(fd)


def test_a_mapping_is_writable_and_private() -> None:
    fd = write_sealed(memoryview(b"x" * 8192))
    try:
        first, second = map_sealed(fd, 8192), map_sealed(fd, 8192)
    finally:
        os.close(fd)
    first[0] = ord("y")
    assert bytes(first[:2]) == b"yx" and bytes(second[:2]) == b"xx"


def test_an_unsealed_memfd_a_wrong_size_or_another_file_is_refused(tmp_path: Any) -> None:
    unsealed = os.memfd_create("xl-comm", os.MFD_ALLOW_SEALING)
    os.pwrite(unsealed, b"x" * 8192, 0)
    sealed = write_sealed(memoryview(b"x" * 8192))
    plain = os.open(tmp_path / "file", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(SharedMemoryError, match="not sealed"):
            map_sealed(unsealed, 8192)
        with pytest.raises(SharedMemoryError, match="holds 8192 bytes"):
            map_sealed(sealed, 4096)
        with pytest.raises(SharedMemoryError, match="not a memfd"):
            map_sealed(plain, 0)
    finally:
        for fd in (unsealed, sealed, plain):
            os.close(fd)


# -- framing with a mailbox


def test_large_buffers_travel_through_shared_memory_and_arrive_mapped() -> None:
    mailbox = LocalMailbox()
    frames = _sealed_message(mailbox, _payload())
    assert len(frames) == 2, "the envelope and the small buffer's frame; the large one went through shared memory"
    header, opened = open_message(KEY, frames, mailbox)
    value = open_body(header, opened)
    assert isinstance(value, Result)
    _, large, small = value.value
    assert isinstance(memoryview(large).obj, mmap.mmap) and bytes(large) == _payload()
    assert bytes(small) == b"small" * 20_000
    assert not mailbox.waiting


def test_without_a_mailbox_to_send_to_every_buffer_is_a_frame() -> None:
    before = _memfds()
    frames = _sealed_message(LocalMailbox(accept=False), _payload())
    assert len(frames) == 3
    assert isinstance(_receive(frames, None), Result)
    assert _memfds() == before, "the memfds that could not go were closed"


def test_shared_buffers_without_a_mailbox_to_receive_are_refused() -> None:
    mailbox = LocalMailbox()
    frames = _sealed_message(mailbox, _payload())
    with pytest.raises(ProtocolError, match="no mailbox"):
        open_message(KEY, frames)
    mailbox.close()


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_flipped_byte_in_the_envelope_is_refused_before_unpickling(data: st.DataObject) -> None:
    mailbox = LocalMailbox()
    frames = _sealed_message(mailbox, _payload())
    position = data.draw(st.integers(0, len(frames[0]) - 1))
    envelope = bytearray(frames[0])
    envelope[position] ^= data.draw(st.integers(1, 255))
    UNPICKLED.clear()
    with pytest.raises(ProtocolError):  # AuthenticationError is one
        _receive([bytes(envelope), *frames[1:]], mailbox)
    assert UNPICKLED == []
    mailbox.close()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, SIZE - 1), st.integers(1, 255))
def test_a_flipped_byte_in_shared_memory_is_refused_before_unpickling(position: int, flip: int) -> None:
    """A sealed memfd cannot change, so the attacker's only move is another memfd in its place."""
    mailbox = LocalMailbox()
    data = _payload()
    frames = _sealed_message(mailbox, data)
    forged = bytearray(data)
    forged[position] ^= flip
    mailbox.swap([write_sealed(memoryview(forged))])
    UNPICKLED.clear()
    with pytest.raises(AuthenticationError, match="GMAC"):
        _receive(frames, mailbox)
    assert UNPICKLED == []


def test_the_same_bytes_unsealed_or_missing_are_refused_before_unpickling() -> None:
    mailbox = LocalMailbox()
    data = _payload()
    frames = _sealed_message(mailbox, data)
    unsealed = os.memfd_create("xl-comm", os.MFD_ALLOW_SEALING)
    os.pwrite(unsealed, data, 0)
    mailbox.swap([unsealed])
    UNPICKLED.clear()
    with pytest.raises(ProtocolError, match="not sealed"):
        _receive(frames, mailbox)
    mailbox.swap([])
    with pytest.raises(ProtocolError, match="1 shared buffers, 0 arrived"):
        _receive(frames, mailbox)
    with pytest.raises(ProtocolError, match="arrived"):
        _receive(frames, LocalMailbox())
    assert UNPICKLED == []


# -- real workers, both directions


@pytest.fixture
def local_hub():
    recorder = Recorder()
    hub = Hub(recorder, same_host=True)
    yield hub, recorder
    hub.close()


def _reply(recorder: Recorder, task_id: int) -> Result | Failure:
    recorder.wait_for(lambda: any(reply[1] == task_id for reply in recorder.replies))
    return next(reply for _, tid, reply in recorder.replies if tid == task_id)


def _count_mappings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the shared buffers this process maps (the hub's side of the worker-to-executor direction)."""
    counted: list[int] = []
    original = framing.map_buffers

    def counting(fds: Sequence[int], sizes: Sequence[int]) -> list[memoryview]:
        counted.append(len(sizes))
        return original(fds, sizes)

    monkeypatch.setattr(framing, "map_buffers", counting)
    return counted


def test_a_worker_gets_and_returns_large_buffers_through_shared_memory(local_hub, monkeypatch) -> None:
    hub, recorder = local_hub
    counted = _count_mappings(monkeypatch)
    process = start_worker(hub, 1)
    recorder.wait_for(lambda: 1 in recorder.hellos)
    data = _payload(5)
    hub.send(1, Task(shm_tasks.mapped, (pickle.PickleBuffer(data),)), task_id=1)
    hub.send(1, Task(shm_tasks.write_through, (pickle.PickleBuffer(bytearray(data)),)), task_id=2)
    hub.send(1, Task(shm_tasks.doubled, (pickle.PickleBuffer(data),)), task_id=3)
    assert _reply(recorder, 1) == Result(True), "the argument arrived as a mapping"
    assert _reply(recorder, 2) == Result((data[0] + 1) % 256), "and a writable one"
    doubled = _reply(recorder, 3)
    assert isinstance(doubled, Result) and bytes(doubled.value) == data * 2
    assert counted == [1], "the result came back through shared memory"
    hub.send(1, Task(shm_tasks.memfds), task_id=4)
    assert _reply(recorder, 4) == Result(0), "the worker holds no memfd once its tasks are done"
    process.kill()
    process.wait(timeout=30)


def test_a_one_shot_worker_that_exits_after_its_answer_still_delivers_it(local_hub, monkeypatch) -> None:
    hub, recorder = local_hub
    counted = _count_mappings(monkeypatch)
    before = _memfds()
    process = start_worker(hub, 1, "--one-shot")
    recorder.wait_for(lambda: 1 in recorder.hellos)
    hub.send(1, Task(shm_tasks.doubled, (pickle.PickleBuffer(_payload(9)),)), task_id=1)
    assert process.wait(timeout=30) == 0
    reply = _reply(recorder, 1)  # may be read after the worker's exit: the memfd travelled in the datagram
    assert isinstance(reply, Result) and bytes(reply.value) == _payload(9) * 2
    assert counted == [1]
    assert _memfds() > before, "the result maps the worker's memfd"
    recorder.replies.clear()
    del reply
    assert _memfds() == before, "and lets it go with the result"


def test_a_dead_worker_leaves_no_memfd_with_the_executor(local_hub) -> None:
    hub, recorder = local_hub
    before = _memfds()
    process = start_worker(hub, 1)
    recorder.wait_for(lambda: 1 in recorder.hellos)
    hub.send(1, Task(os.kill, (os.getpid(), 0)), task_id=1)
    _reply(recorder, 1)
    os.kill(process.pid, signal.SIGSTOP)  # the next task's buffer waits, unread, in the worker's mailbox
    hub.send(1, Task(shm_tasks.mapped, (pickle.PickleBuffer(_payload()),)), task_id=2)
    process.kill()
    process.wait(timeout=30)
    recorder.wait_for(lambda: 1 in recorder.exits)
    hub.forget(1)
    assert _memfds() == before


def test_forced_fallback_sends_frames(monkeypatch) -> None:
    monkeypatch.setenv("XL_PORTABLE", "shm")
    recorder = Recorder()
    hub = Hub(recorder, same_host=True)
    try:
        counted = _count_mappings(monkeypatch)
        process = start_worker(hub, 1)
        recorder.wait_for(lambda: 1 in recorder.hellos)
        hub.send(1, Task(shm_tasks.mapped, (pickle.PickleBuffer(_payload()),)), task_id=1)
        hub.send(1, Task(shm_tasks.doubled, (pickle.PickleBuffer(_payload()),)), task_id=2)
        assert _reply(recorder, 1) == Result(False)
        doubled = _reply(recorder, 2)
        assert isinstance(doubled, Result) and bytes(doubled.value) == _payload() * 2
        assert counted == []
        process.kill()
        process.wait(timeout=30)
    finally:
        hub.close()


def test_a_memfd_that_cannot_be_mapped_is_read_instead(monkeypatch) -> None:
    """Out of fds or address space: the bytes of the sealed memfd are copied, the message is not lost."""

    def refuse(*args: Any, **kwargs: Any) -> mmap.mmap:
        raise OSError(24, "Too many open files")

    data = _payload(3)
    fd = write_sealed(memoryview(data))
    monkeypatch.setattr(mmap, "mmap", refuse)
    try:
        view = map_sealed(fd, len(data))
    finally:
        os.close(fd)
    assert isinstance(view.obj, bytearray) and bytes(view) == data


def test_a_body_prepared_ahead_seals_the_same_message() -> None:
    """The hub writes and tags a large body before it takes its socket lock (framing.prepare)."""
    before = _memfds()
    mailbox = LocalMailbox()
    body = pack_body(Result(pickle.PickleBuffer(_payload(4))))
    prepared = prepare(KEY, body)
    assert prepared is not None
    try:
        frames = seal(KEY, Header(Kind.RESULT, 3, 1, 7), body, mailbox, prepared)
    finally:
        prepared.close()
    assert len(frames) == 1
    assert _memfds() == before + 1, "the sender's memfd is closed; only the mailbox's copy (in flight) is left"
    value = _receive([bytes(memoryview(frame).cast("B")) for frame in frames], mailbox)
    assert isinstance(value, Result) and bytes(value.value) == _payload(4)
    assert prepare(KEY, pack_body(Result(b"small"))) is None


def test_a_worker_sends_buffers_only_to_a_mailbox_that_proved_it_holds_the_key() -> None:
    """Another process may bind the hub's mailbox name when the hub made none: it gets a registration, and never
    a buffer, unless it answers with the acknowledgement only a holder of the key can make."""
    import socket

    from xl_comm.shared import _ACK, _ACK_DOMAIN, WorkerMailbox, registration_proof

    address = f"ipc://@xl-comm-test-{os.getpid()}-{os.urandom(4).hex()}"
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    squatter.bind(mailbox_name(address))
    worker = WorkerMailbox(KEY, address, 5)
    try:
        assert worker.registered
        _, (theirs,), _, _ = socket.recv_fds(squatter, 64, 1)
        with socket.socket(fileno=theirs) as back:
            fd = write_sealed(memoryview(_payload()))
            try:
                assert not worker.send(5, b"n" * 16, [fd]), "no acknowledgement yet"
                back.send(_ACK + registration_proof(new_key(), 5, _ACK_DOMAIN))
                assert not worker.send(5, b"n" * 16, [fd]), "an acknowledgement under another key"
                back.send(_ACK + registration_proof(KEY, 5, _ACK_DOMAIN))
                assert worker.send(5, b"n" * 16, [fd]), "the hub's acknowledgement"
            finally:
                os.close(fd)
    finally:
        worker.close()
        squatter.close()


def test_buffers_nobody_claims_are_closed_beyond_a_bound() -> None:
    from xl_comm.shared import MAX_PENDING, _Pending

    pending = _Pending()
    others = [os.pipe() for _ in range(3)]  # another sender's: never closed for this sender's bound
    for index, (read, _) in enumerate(others):
        pending.add(2, (10_000 + index).to_bytes(16, "big"), [read])
    pipes = [os.pipe() for _ in range(MAX_PENDING + 3)]
    for index, (read, _) in enumerate(pipes):
        pending.add(1, index.to_bytes(16, "big"), [read])
    for read, write in others:
        os.fstat(read)  # still open
        os.close(write)
    assert pending.take(2, (10_002).to_bytes(16, "big")) == [others[2][0]]
    closed = []
    for read, write in pipes:
        try:
            os.fstat(read)
        except OSError:
            closed.append(read)
        os.close(write)
    assert closed == [read for read, _ in pipes[:3]]
    assert pending.take(1, (MAX_PENDING + 2).to_bytes(16, "big")) == [pipes[-1][0]]
    pending.drop()


def test_the_first_answer_to_a_small_task_already_uses_shared_memory(local_hub, monkeypatch) -> None:
    """The hub acknowledges a worker's mailbox when its hello arrives, before any task is sent."""
    hub, recorder = local_hub
    counted = _count_mappings(monkeypatch)
    process = start_worker(hub, 1, "--one-shot")
    recorder.wait_for(lambda: 1 in recorder.hellos)
    hub.send(1, Task(shm_tasks.large, (SIZE,)), task_id=1)
    reply = _reply(recorder, 1)
    assert isinstance(reply, Result) and bytes(reply.value) == b"r" * SIZE
    assert counted == [1]
    assert process.wait(timeout=30) == 0


def test_received_buffers_are_copied_once_mappings_would_hold_too_many_fds(monkeypatch) -> None:
    """Before Python 3.13 each live mapping holds an fd: beyond the cap a buffer is read into a copy, so arrays the
    user keeps cannot use up the process's fds; a released mapping gives its place back."""
    from xl_comm import shared

    if sys.version_info >= (3, 13):
        pytest.skip("Python 3.13's mmap keeps no fd (trackfd=False): there is no cap to reach")
    live = shared._LiveMappings()
    monkeypatch.setattr(shared, "_LIVE", live)
    monkeypatch.setattr(shared, "MAX_LIVE_MAPPINGS", 2)
    payload = b"x" * 4096
    fds = [shared.write_sealed(memoryview(payload)) for _ in range(3)]
    try:
        views = [shared.map_sealed(fd, len(payload)) for fd in fds]
        assert [isinstance(view.obj, mmap.mmap) for view in views] == [True, True, False]
        assert all(bytes(view) == payload for view in views)
        assert live.count == 2
        first = views.pop(0)
        first.release()
        del first
        gc.collect()
        assert live.count == 1
        again = shared.map_sealed(fds[0], len(payload))
        assert isinstance(again.obj, mmap.mmap)
    finally:
        for fd in fds:
            os.close(fd)


def test_a_result_whose_shared_buffers_are_lost_fails_its_task(local_hub, monkeypatch) -> None:
    """An authentic answer whose memfds cannot be read is answered as a failure of its task, never dropped (a
    dropped result would leave its Future waiting while the worker lives on)."""
    from xl_comm.shared import HubMailbox, SharedMemoryError

    hub, recorder = local_hub

    def lost(self: HubMailbox, worker_id: int, nonce: bytes) -> list[int]:
        raise SharedMemoryError("the shared buffers of a message did not arrive")

    monkeypatch.setattr(HubMailbox, "take", lost)
    process = start_worker(hub, 1, "--one-shot")
    recorder.wait_for(lambda: 1 in recorder.hellos)
    hub.send(1, Task(shm_tasks.large, (SIZE,)), task_id=1)
    reply = _reply(recorder, 1)
    assert isinstance(reply, Failure)
    assert "shared buffers" in str(reply.error)
    assert process.wait(timeout=30) == 0


def test_open_message_names_the_task_of_a_message_whose_buffers_are_lost() -> None:
    """The worker's side of the same rule: the error carries the authenticated header, so the task is answered."""
    from xl_comm.framing import LostBuffersError
    from xl_comm.shared import SharedMemoryError

    class Sender:
        def send(self, worker_id: int, nonce: bytes, fds: Sequence[int]) -> bool:
            return True

        def take(self, worker_id: int, nonce: bytes) -> list[int]:
            raise SharedMemoryError("gone")

    key = framing.new_key()
    header = framing.Header(Kind.TASK, 3, 1, 7)
    frames = framing.seal(key, header, framing.pack_body(Task(len, (pickle.PickleBuffer(b"a" * SIZE),))), Sender())
    with pytest.raises(LostBuffersError, match="gone") as caught:
        framing.open_message(key, frames, Sender())
    assert caught.value.header == header
    # and for a receiver: the header with no frames, and opening the body fails its task with the reason
    opened_header, opened, lost = framing.open_received(key, frames, Sender())
    assert (opened_header, opened) == (header, []) and isinstance(lost, LostBuffersError)
    with pytest.raises(framing.BodyError, match="gone") as failed:
        framing.open_body(opened_header, opened, lost)
    assert failed.value.header == header

"""Large buffers through sealed shared memory between two processes on one host, instead of through the socket.

Measured on this project's 2-core test machine, 100 MB each way: zmq's out-of-band frames move 0.4 to 0.6 GB/s
(the kernel copies every byte twice, through a socket buffer), while one ``pwrite`` into a memfd takes about
60 ms and mapping it on the other side about 10 ms.

The sender writes each buffer of at least :data:`SHARED_MIN_BYTES` once into a new memfd, then seals it
(``F_SEAL_WRITE``, ``F_SEAL_GROW``, ``F_SEAL_SHRINK`` and ``F_SEAL_SEAL``): from then on nobody, the sender
included, can change its bytes. The memfd's fd travels with ``SCM_RIGHTS`` in a datagram on a unix socket (the
*mailbox*), sent before the zmq message that refers to it by the message's random nonce. The receiver checks the
seals, maps the memfd copy-on-write (``MAP_PRIVATE``: a writable array for the user's code, which never writes
through to the sender), checks the GMAC tags of the message's buffer table on the mapping, and unpickles with the
mapping as the out-of-band buffer: no copy.

Nothing is ever named in a filesystem, so nothing needs sweeping: a memfd lives while an fd or a mapping refers
to it. An fd in flight in a datagram survives its sender's exit (a one-shot worker sends its result and exits)
and is released by the kernel with the receiving socket (the receiver's exit, or its close).

Mailboxes: the hub binds a datagram socket at an abstract unix name derived from its zmq address (so only when
that address is an abstract unix socket: every worker on this host), before it binds the address itself, so no
other process can take the name once it can see the address; it drops datagrams of other users (their
credentials come with each datagram, ``SO_PASSCRED``). Each worker makes a socket pair, keeps one end and
registers the other with the hub, with a keyed proof of its worker id: the hub sends to the worker through that
end (no name another process could bind first) and answers with a keyed acknowledgement; the worker sends to the
hub's name only once it has that answer, so if the hub made no mailbox and another process bound the name, it
never gets a buffer.

Buffers arrive ahead of their messages and wait under the message's nonce; a sender's datagrams keep the order of
its messages, so a datagram older than the one a message claims belongs to a message that will never be read and
is closed (at most MAX_PENDING per sender wait in the hub: an honest sender never has that many messages unread,
so no message of one loses its buffers to the bound).

Where memfds, seals or abstract unix sockets are missing (not Linux), or with ``XL_PORTABLE=shm``, no mailbox is
made and large buffers travel as zmq frames, as before.
"""

from __future__ import annotations

import _socket as socket  # the socket module costs about 3 ms of a worker's start; its C core 0.3
import contextlib
import os
import struct
import sys
import threading
from _blake2 import blake2b
from _operator import _compare_digest as compare_digest
from collections.abc import Sequence
from typing import Any

from xl_comm.portable import forced

#: Buffers at least this large go through shared memory (when the message takes the GMAC path at all, see
#: framing.FAST_MAC_MIN_BYTES). Below it a memfd's creation, seals and mapping cost more than the socket's copy.
SHARED_MIN_BYTES = 4 << 20
#: At most this many memfds travel in one datagram (the kernel's SCM_MAX_FD is 253); a message with more shared
#: buffers sends them as frames.
MAX_SHARED_BUFFERS = 250
#: The seals a received memfd must carry: its size and bytes are fixed, and no seal can be removed.
_WRITE_CHUNK = 1 << 30  # pwrite moves at most about 2 GiB per call
_ABSTRACT_PREFIX = "ipc://@"
_PROOF_DOMAIN = b"xl-comm mailbox registration"
_ACK_DOMAIN = b"xl-comm mailbox acknowledged"
_REGISTER = b"R"
_ACK = b"A"
_BUFFERS = b"B"
#: At most this many datagrams' fds of one sender wait for their messages; its older ones are closed beyond it.
MAX_PENDING = 256
#: Before Python 3.13 every live mapping keeps a duplicate of its fd: beyond this many live mappings (or a quarter
#: of the fd limit, if lower) a received buffer is read into a copy instead, so that arrays kept by the user
#: cannot use up the process's fds (which zmq, files and sockets need too).
MAX_LIVE_MAPPINGS = 1024
_CREDENTIALS = struct.Struct("=iII")  # struct ucred: pid, uid, gid
_WORKER = struct.Struct("!I")
_NONCE_BYTES = 16
_PROOF_BYTES = 32
_DATAGRAM_MAX = 64

#: The seals a memfd gets, and must carry when received: its size and bytes are fixed for good (Linux's values of
#: F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE; fcntl is imported on the first large buffer only,
#: which a test compares with these).
REQUIRED_SEALS = 0x0001 | 0x0002 | 0x0004 | 0x0008
_HAS_MEMFD = hasattr(os, "memfd_create") and sys.platform == "linux"


class SharedMemoryError(Exception):
    """A shared buffer that cannot be trusted or mapped: missing, unsealed, of the wrong size."""


def available(address: str) -> bool:
    """Whether buffers may travel through shared memory to and from peers of the zmq ``address``: only over an
    abstract unix socket (every peer on this host), where memfds exist, unless ``XL_PORTABLE=shm``."""
    return _HAS_MEMFD and address.startswith(_ABSTRACT_PREFIX) and not forced("shm")


def mailbox_name(address: str) -> bytes:
    """The abstract unix name of the hub's mailbox for the zmq ``address`` (pure).

    >>> mailbox_name("ipc://@xl-comm-12-ab")
    b'\\x00xl-comm-12-ab-shm'
    """
    if not address.startswith(_ABSTRACT_PREFIX):
        raise ValueError(f"no mailbox for {address!r}: shared memory needs an abstract unix address (ipc://@...)")
    return b"\0" + address[len(_ABSTRACT_PREFIX) :].encode() + b"-shm"


def registration_proof(key: bytes, worker_id: int, domain: bytes = _PROOF_DOMAIN) -> bytes:
    """What a worker shows the hub with its mailbox: a MAC of its id under the executor's key (pure). With the
    acknowledgement's domain: what the hub answers, so the worker knows its mailbox reached the hub."""
    return blake2b(domain + _WORKER.pack(worker_id), key=key, digest_size=_PROOF_BYTES).digest()


def write_sealed(view: memoryview) -> int:
    """A new memfd holding the bytes of ``view``, sealed against any change; the caller owns (closes) the fd."""
    fd = os.memfd_create("xl-comm", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        nbytes = view.nbytes
        os.ftruncate(fd, nbytes)
        done = 0
        while done < nbytes:
            done += os.pwrite(fd, view[done : done + _WRITE_CHUNK], done)
        import fcntl  # here, not at a worker's start

        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, REQUIRED_SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def map_sealed(fd: int, nbytes: int) -> memoryview:
    """A copy-on-write mapping of the sealed memfd ``fd`` of exactly ``nbytes``, as a writable view (writes stay
    in this process). Refused unless the seals make its bytes immutable. Does not close ``fd``."""
    import fcntl
    import mmap

    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as problem:
        raise SharedMemoryError(f"a shared buffer is not a memfd ({problem})") from None
    if seals & REQUIRED_SEALS != REQUIRED_SEALS:
        raise SharedMemoryError(f"a shared buffer is not sealed against writes (seals {seals:#x})")
    size = os.fstat(fd).st_size
    if size != nbytes:
        raise SharedMemoryError(f"a shared buffer holds {size} bytes, its message says {nbytes}")
    if not _NO_FD and not _LIVE.claim():
        return _read_sealed(fd, nbytes)  # enough fds are held by mappings already
    try:
        mapping = mmap.mmap(fd, nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE, **_NO_FD)
    except OSError:  # out of fds or of address space
        if not _NO_FD:
            _LIVE.release()
        return _read_sealed(fd, nbytes)
    if not _NO_FD:
        import weakref

        weakref.finalize(mapping, _LIVE.release)
    return memoryview(mapping)


class _LiveMappings:
    """How many mappings (each holding a duplicated fd before Python 3.13) are alive, against a cap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self._cap: int | None = None

    def claim(self) -> bool:
        with self._lock:
            if self._cap is None:
                self._cap = MAX_LIVE_MAPPINGS
                with contextlib.suppress(ImportError, OSError, ValueError):
                    import resource

                    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                    if soft != resource.RLIM_INFINITY:
                        self._cap = min(self._cap, soft // 4)
            if self.count >= self._cap:
                return False
            self.count += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.count -= 1


_LIVE = _LiveMappings()


def _read_sealed(fd: int, nbytes: int) -> memoryview:
    """A private copy of a sealed memfd: where it cannot be mapped, its bytes are read (they cannot change)."""
    copy = bytearray(nbytes)
    view = memoryview(copy)
    done = 0
    while done < nbytes:
        read = os.preadv(fd, [view[done : done + _WRITE_CHUNK]], done)
        if read == 0:
            raise SharedMemoryError(f"a shared buffer ended after {done} of {nbytes} bytes")
        done += read
    return view


#: Python 3.13's mmap can do without keeping a duplicate of the fd (one fd per live mapping otherwise).
_NO_FD: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def _send_fds(sock: Any, data: bytes, fds: Sequence[int], address: bytes | None = None) -> bool:
    """Send one datagram carrying ``fds``; False (nothing sent) when the peer's queue is full or it is gone."""
    payload = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)  # a C int array
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, payload)] if fds else []
    try:
        if address is None:
            sock.sendmsg([data], ancillary, socket.MSG_DONTWAIT)
        else:
            sock.sendmsg([data], ancillary, socket.MSG_DONTWAIT, address)
    except OSError:  # full (EAGAIN), gone (ECONNREFUSED, ENOENT), too many fds in flight (ETOOMANYREFS)
        return False
    return True


def _receive_all(sock: Any, uid: int | None = None) -> list[tuple[bytes, list[int]]]:
    """Every datagram waiting on ``sock``, with the fds each carried (never blocks). ``uid``: drop (and close the
    fds of) datagrams whose sender's credentials (SO_PASSCRED) name another user."""
    received: list[tuple[bytes, list[int]]] = []
    space = socket.CMSG_SPACE(MAX_SHARED_BUFFERS * 4) + socket.CMSG_SPACE(_CREDENTIALS.size)
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(_DATAGRAM_MAX, space, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return received
        fds: list[int] = []
        sender = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(
                    int.from_bytes(payload[at : at + 4], sys.byteorder, signed=True)
                    for at in range(0, len(payload) - 3, 4)
                )
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _CREDENTIALS.size:
                sender = _CREDENTIALS.unpack_from(payload)[1]
        if uid is not None and sender != uid:
            _close_all(fds)  # another user's datagram: it cannot be ours, and must not pile up fds here
            continue
        received.append((data, fds))


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Pending:
    """Buffers that arrived ahead of their messages: nonce -> (sender's worker id, fds). A sender's datagrams
    arrive in the order of its messages, so when one is taken, that sender's older ones belong to messages that
    will never be read (refused, or their sender died between datagram and message) and are closed."""

    def __init__(self) -> None:
        self._by_nonce: dict[bytes, tuple[int, list[int]]] = {}

    def add(self, worker_id: int, nonce: bytes, fds: list[int]) -> None:
        old = self._by_nonce.pop(nonce, None)
        if old is not None:  # a nonce is random: a repeat is junk
            _close_all(old[1])
        self._by_nonce[nonce] = (worker_id, fds)
        mine = [other for other, (owner, _) in self._by_nonce.items() if owner == worker_id]
        for other in mine[: max(0, len(mine) - MAX_PENDING)]:  # its oldest belong to messages nobody will read
            _close_all(self._by_nonce.pop(other)[1])

    def take(self, worker_id: int, nonce: bytes) -> list[int] | None:
        found = self._by_nonce.get(nonce)
        if found is None:
            return None
        for other in list(self._by_nonce):  # insertion order: the older ones come first
            if other == nonce:
                break
            if self._by_nonce[other][0] == found[0]:
                _close_all(self._by_nonce.pop(other)[1])
        del self._by_nonce[nonce]
        return found[1]

    def drop(self, worker_id: int | None = None) -> None:
        for nonce in list(self._by_nonce):
            owner, fds = self._by_nonce[nonce]
            if worker_id is None or owner == worker_id:
                del self._by_nonce[nonce]
                _close_all(fds)


def map_buffers(fds: Sequence[int], sizes: Sequence[int]) -> list[memoryview]:
    """Map received memfds (see :func:`map_sealed`); closes every fd, mapped or not."""
    try:
        if len(fds) != len(sizes):
            raise SharedMemoryError(f"a message names {len(sizes)} shared buffers, {len(fds)} arrived")
        return [map_sealed(fd, size) for fd, size in zip(fds, sizes, strict=True)]
    finally:
        _close_all(fds)


def share(views: Sequence[memoryview]) -> list[int] | None:
    """Sealed memfds of ``views`` (the caller closes them), or None where one cannot be made (out of memory or
    fds): the buffers then travel as frames."""
    fds: list[int] = []
    try:
        for view in views:
            fds.append(write_sealed(view))
    except OSError:
        _close_all(fds)
        return None
    return fds


class HubMailbox:
    """The executor's side: a datagram socket at :func:`mailbox_name`, the mailboxes workers registered, and the
    buffers that arrived ahead of their messages. Any thread may use it (one lock). ``close()`` releases all."""

    def __init__(self, key: bytes, address: str) -> None:
        self._key = key
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the sender's uid with each datagram
        self._sock.bind(mailbox_name(address))
        self._uid = os.getuid()
        self._workers: dict[int, Any] = {}
        self._pending = _Pending()
        self._closed = False

    def fileno(self) -> int:
        """Readable when datagrams wait (the hub's IO thread drains them, so the queue stays short)."""
        return self._sock.fileno()

    def drain(self) -> None:
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        if self._closed:
            return
        for data, fds in _receive_all(self._sock, self._uid):
            kind, body = data[:1], data[1:]
            if kind == _BUFFERS and len(body) == _WORKER.size + _NONCE_BYTES:
                (worker_id,) = _WORKER.unpack_from(body)
                self._pending.add(worker_id, body[_WORKER.size :], fds)
                continue
            if kind == _REGISTER and len(body) == _WORKER.size + _PROOF_BYTES and len(fds) == 1:
                (worker_id,) = _WORKER.unpack_from(body)
                if compare_digest(registration_proof(self._key, worker_id), body[_WORKER.size :]):
                    old = self._workers.pop(worker_id, None)
                    if old is not None:
                        old.close()
                    try:
                        mailbox = self._workers[worker_id] = socket.socket(fileno=fds[0])
                    except OSError:  # not a socket
                        _close_all(fds)
                        continue
                    acknowledgement = _ACK + registration_proof(self._key, worker_id, _ACK_DOMAIN)
                    _send_fds(mailbox, acknowledgement, [])
                    continue
            _close_all(fds)  # junk: a foreign or malformed datagram

    def send(self, worker_id: int, nonce: bytes, fds: Sequence[int]) -> bool:
        """Send buffers to a registered worker; False when it has no mailbox (the buffers go as frames)."""
        with self._lock:
            mailbox = self._workers.get(worker_id)
            if mailbox is None:
                self._drain()  # its registration precedes its hello, so it is here if it was sent
                mailbox = self._workers.get(worker_id)
                if mailbox is None:
                    return False
            return _send_fds(mailbox, _BUFFERS + _WORKER.pack(worker_id) + nonce, fds)

    def take(self, worker_id: int, nonce: bytes) -> list[int]:
        """The fds a worker sent ahead of its message with ``nonce`` (sent before the message, so present)."""
        with self._lock:
            fds = self._pending.take(worker_id, nonce)
            if fds is None:
                self._drain()
                fds = self._pending.take(worker_id, nonce)
        if fds is None:
            raise SharedMemoryError("the shared buffers of a message did not arrive")
        return fds

    def forget(self, worker_id: int) -> None:
        """Drop a worker that is gone: its mailbox and the buffers it sent that no message claimed."""
        with self._lock:
            mailbox = self._workers.pop(worker_id, None)
            if mailbox is not None:
                mailbox.close()
            self._pending.drop(worker_id)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for mailbox in self._workers.values():
                mailbox.close()
            self._workers.clear()
            self._pending.drop()
            self._sock.close()


class WorkerMailbox:
    """A worker's side: one end of a socket pair to receive on, the other registered with the hub; buffers to the
    executor go to the hub's :func:`mailbox_name`. Used by the worker's main thread and its flusher (one lock)."""

    def __init__(self, key: bytes, address: str, worker_id: int) -> None:
        self._lock = threading.Lock()
        self._hub = mailbox_name(address)
        self._worker = _WORKER.pack(worker_id)
        self._acknowledgement = _ACK + registration_proof(key, worker_id, _ACK_DOMAIN)
        self._acknowledged = False
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._pending = _Pending()
        try:
            registration = _REGISTER + self._worker + registration_proof(key, worker_id)
            # False when the hub has no mailbox or its queue is full: the executor then sends frames.
            self.registered = _send_fds(self._sock, registration, [theirs.fileno()], self._hub)
        finally:
            theirs.close()

    def send(self, worker_id: int, nonce: bytes, fds: Sequence[int]) -> bool:
        """Send buffers to the hub, once the hub has acknowledged this mailbox: until then the name might be bound
        by another process (a hub without a mailbox leaves it free), which must never get a result's bytes."""
        with self._lock:
            if not self._acknowledged:
                self._collect()
                if not self._acknowledged:
                    return False
        return _send_fds(self._sock, _BUFFERS + self._worker + nonce, fds, self._hub)

    def take(self, worker_id: int, nonce: bytes) -> list[int]:
        with self._lock:
            fds = self._pending.take(0, nonce)
            if fds is None:
                self._collect()
                fds = self._pending.take(0, nonce)
        if fds is None:
            raise SharedMemoryError("the shared buffers of a message did not arrive")
        return fds

    def _collect(self) -> None:
        """Read what the hub sent: buffers ahead of their messages, and the acknowledgement."""
        for data, received in _receive_all(self._sock):
            if data[:1] == _BUFFERS and len(data) == 1 + _WORKER.size + _NONCE_BYTES:
                self._pending.add(0, data[1 + _WORKER.size :], received)
                continue
            if compare_digest(data, self._acknowledgement):
                self._acknowledged = True
            _close_all(received)

    def close(self) -> None:
        with self._lock:
            self._pending.drop()
            self._sock.close()


def worker_mailbox(key: bytes, address: str, worker_id: int) -> WorkerMailbox | None:
    """The worker's mailbox when shared memory is available for ``address``, else None (frames only)."""
    if not available(address):
        return None
    try:
        return WorkerMailbox(key, address, worker_id)
    except OSError:
        return None

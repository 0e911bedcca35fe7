"""One dict per message on a zmq PAIR socket, authenticated (executorlib 1.x's ``interface_*`` functions).

1.x sent bare cloudpickle. Here every message is sealed with xl-comm's keyed BLAKE2b framing under one key per
process tree, ``EXECUTORLIB_API_KEY`` (32 random bytes as hex). The key lives in the environment because these
functions take no key and may be handed a raw ``zmq.Socket``, and because workers that third-party spawners start
with ``Popen`` and no ``env=`` must inherit it. It never appears on a command line, and it is apart from the
per-executor keys of our own executors. The MAC is checked before a byte is unpickled; a sequence number per socket
stops replays within a connection.

The key outlives a worker, so a message recorded from one worker would still verify after a restart, when the
sequence numbers start again. Each worker session therefore has a random session id, carried in the MAC-covered
header's task-id field: ``SocketInterface.bootup`` draws a new one (:func:`new_peer`), the worker adopts the id of
the first message it receives and answers under it, and a socket that has a session refuses any other id. A raw
socket (``interface_connect``, a plain PAIR) has no session until its first message, whose id it adopts: session 0
for a sender without one, as before.
"""

from __future__ import annotations

import os
import secrets
import threading
import weakref
from typing import Any

import zmq
from xl_comm import KEY_BYTES, Header, Kind, ProtocolError, open_frames, seal
from xl_serial import dumps, loads

from executorlib.errors import AuthenticationError

API_KEY_ENV = "EXECUTORLIB_API_KEY"

#: Milliseconds a closing socket keeps trying to deliver what it has queued (1.x: forever, which hangs a worker
#: whose executor has gone).
LINGER_MS = 2000

# pyzmq sockets take no new attributes, so the counters live beside them and go with them.
_sent: weakref.WeakKeyDictionary[zmq.Socket[Any], int] = weakref.WeakKeyDictionary()
_received: weakref.WeakKeyDictionary[zmq.Socket[Any], int] = weakref.WeakKeyDictionary()
_sessions: weakref.WeakKeyDictionary[zmq.Socket[Any], int] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def api_key() -> bytes:
    """The process tree's key: read from ``EXECUTORLIB_API_KEY``, or made and put there on first use, so every
    child process started from now on inherits it."""
    text = os.environ.get(API_KEY_ENV)
    if text is None:
        with _lock:
            text = os.environ.setdefault(API_KEY_ENV, secrets.token_hex(KEY_BYTES))
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"{API_KEY_ENV} must hold {KEY_BYTES} random bytes as {2 * KEY_BYTES} hex digits, got {len(text)} "
            f"characters that are not; unset it and executorlib makes one (children inherit it)"
        )
    return key


def interface_send(socket: zmq.Socket[Any] | None, result_dict: dict[str, Any]) -> None:
    """Send one dict as one authenticated message (nothing for ``socket=None``)."""
    if socket is None:
        return
    key = api_key()
    with _lock:
        seq = _sent[socket] = _sent.get(socket, 0) + 1
        session = _sessions.get(socket, 0)
    socket.send_multipart(seal(key, Header(Kind.API_DICT, 0, seq, session), dumps(result_dict)))


def interface_receive(socket: zmq.Socket[Any] | None) -> dict[str, Any]:
    """Block for one message and return its dict (``{}`` for ``socket=None``).

    Raises AuthenticationError, without unpickling anything, for a message that is not sealed with this process
    tree's key, that belongs to another worker session (one before a restart), or that repeats an earlier one."""
    if socket is None:
        return {}
    frames = socket.recv_multipart(copy=False)
    try:
        header, body = open_frames(api_key(), frames)
    except ProtocolError as problem:  # AuthenticationError of xl-comm included
        raise AuthenticationError(
            f"refused a message that is not an authenticated executorlib message ({problem}); both ends must run "
            f"this executorlib and share {API_KEY_ENV}, which child processes inherit from the environment"
        ) from None
    if header.kind != Kind.API_DICT:
        raise AuthenticationError(f"refused a {header.kind.name} message: this socket carries API dicts only")
    with _lock:
        session = _sessions.setdefault(socket, header.task_id)  # a socket without a session adopts the first
        if header.task_id != session:
            raise AuthenticationError(
                f"refused a message of another worker session (id {header.task_id:#x}, this connection's is "
                f"{session:#x}): a message recorded before the worker was restarted cannot be replayed into the new "
                "session"
            )
        last = _received.get(socket, 0)
        if header.seq <= last:
            raise AuthenticationError(
                f"refused a replayed message: sequence number {header.seq}, but {last} was already received"
            )
        _received[socket] = header.seq
    message = loads(body)
    if not isinstance(message, dict):
        raise TypeError(f"an executorlib API message holds a dict, got {type(message).__name__}")
    return message


def new_peer(socket: zmq.Socket[Any]) -> None:
    """A new worker process is about to connect to ``socket`` (a start or a restart): forget the sequence numbers
    seen (the new worker's start again at 1) and draw a new session id, so nothing recorded from an earlier worker
    is accepted (the worker adopts the id from the first message sent to it)."""
    with _lock:
        _received.pop(socket, None)
        _sessions[socket] = secrets.randbits(64) | 1  # never 0, the id of a sender without a session


def interface_connect(host: str, port: str) -> tuple[zmq.Context[Any], zmq.Socket[Any]]:
    """A new context and a PAIR socket connected to ``tcp://<host>:<port>``."""
    context: zmq.Context[Any] = zmq.Context()
    socket = context.socket(zmq.PAIR)
    socket.connect(f"tcp://{host}:{port}")
    return context, socket


def interface_shutdown(socket: zmq.Socket[Any] | None, context: zmq.Context[Any] | None) -> None:
    """Close ``socket`` and terminate ``context``; nothing unless both are given."""
    if socket is not None and context is not None:
        socket.close(linger=LINGER_MS)
        context.term()

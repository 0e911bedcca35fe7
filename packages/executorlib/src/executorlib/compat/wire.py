"""One dict per message on a zmq PAIR socket, authenticated (executorlib 1.x's ``interface_*`` functions).

1.x sent bare cloudpickle. Here every message is sealed with xl-comm's keyed BLAKE2b framing under one key per
process tree, ``EXECUTORLIB_API_KEY`` (32 random bytes as hex). The key lives in the environment because these
functions take no key and may be handed a raw ``zmq.Socket``, and because workers that third-party spawners start
with ``Popen`` and no ``env=`` must inherit it. It never appears on a command line, and it is apart from the
per-executor keys of our own executors. The MAC is checked before a byte is unpickled; a sequence number per socket
stops replays within a connection.
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
    socket.send_multipart(seal(key, Header(Kind.API_DICT, 0, seq, 0), dumps(result_dict)))


def interface_receive(socket: zmq.Socket[Any] | None) -> dict[str, Any]:
    """Block for one message and return its dict (``{}`` for ``socket=None``).

    Raises AuthenticationError, without unpickling anything, for a message that is not sealed with this process
    tree's key or that repeats an earlier one."""
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
    """Forget the sequence numbers seen on ``socket``: a new process is about to connect to it (a restart), and
    its numbers start again at 1."""
    with _lock:
        _received.pop(socket, None)


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

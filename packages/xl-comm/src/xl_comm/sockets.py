"""Sending and receiving frame lists on zmq sockets, for the hot path of every task.

pyzmq's ``send_multipart``/``recv_multipart`` are general: they type-check every part, combine flags as
``enum.IntFlag`` (Python-level enum code on each operation) and wrap small frames in ``zmq.Frame`` objects when
asked not to copy. A task's envelope is small and its out-of-band buffers are large, so here the envelope is
copied (one C call) and only large buffers travel without a copy.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import zmq

# Plain ints: an ``int & zmq.PollEvent`` goes through the enum's Python-level reflected operator.
SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
POLLIN = int(zmq.POLLIN)

#: Frames at least this long are sent without a copy (pyzmq's own default threshold for zero-copy sends).
ZERO_COPY_MIN_BYTES = 65536

#: The compiled send under pyzmq's Socket.send, which only adds the draft options routing_id and group (unused
#: here) in a Python frame of its own, on every frame.
_send = zmq.backend.Socket.send


def send_frames(sock: zmq.Socket[Any], frames: Sequence[Any], flags: int = 0) -> None:
    """Send ``frames`` as one multipart message; large frames (pickle-5 buffers) are not copied."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        _send(sock, frame, flags | SNDMORE if index < last else flags, _nbytes(frame) < ZERO_COPY_MIN_BYTES)


def _nbytes(frame: Any) -> int:
    if type(frame) is bytes:
        return len(frame)
    if isinstance(frame, pickle.PickleBuffer):
        return frame.raw().nbytes
    return memoryview(frame).nbytes


def recv_frames(sock: zmq.Socket[Any], flags: int = 0) -> list[zmq.Frame]:
    """Receive one multipart message as ``zmq.Frame`` objects (their buffers are not copied)."""
    frame = sock.recv(flags, copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        frames.append(frame)
    return frames


def recv_routed(sock: zmq.Socket[Any], flags: int = 0) -> tuple[bytes, list[zmq.Frame]]:
    """Receive one message on a ROUTER socket: the sender's routing id, as bytes (a copy costs less than a
    zmq.Frame for these few bytes), and the frames the sender sent (zmq never delivers an empty message, so at
    least one follows the id)."""
    identity: bytes = sock.recv(flags)
    return identity, recv_frames(sock, flags)


def try_recv_routed(sock: zmq.Socket[Any]) -> tuple[bytes, list[zmq.Frame]] | None:
    """:func:`recv_routed` without blocking; None when no message waits. The failing call raises and catches
    zmq.Again, which costs more than :func:`input_pending`: use it where a message most likely waits."""
    try:
        return recv_routed(sock, NOBLOCK)
    except zmq.Again:
        return None


def input_pending(sock: zmq.Socket[Any]) -> bool:
    """Whether a message waits on ``sock`` (this also lets zmq process the commands that signal its fd).

    A zero-timeout ``zmq_poll`` rather than ``getsockopt(zmq.EVENTS)``: pyzmq's getsockopt looks the option up
    in a Python enum on every call, and this runs several times per task."""
    return bool(zmq.zmq_poll([(sock, POLLIN)], 0))

"""The floor's far end: ``python -m benchmarks.echo_server ADDRESS [--out-of-band | --shared FD]``.

A REP socket that connects to ADDRESS, unpickles ``(fn, args, kwargs)``, calls it and sends back the pickled
result; an empty message ends it. Nothing else: no framing, no MAC. With ``--out-of-band`` a message is a pickle
stream followed by its pickle-5 buffers, one frame each, received and sent without a copy (``copy=False``), as a
large array travels at best; without it, one frame each way (the small-task floor). With ``--shared FD`` (a unix
datagram socket inherited from the benchmark) each pickle-5 buffer travels in a sealed memfd whose fd comes and goes
on that socket, mapped without a copy on receipt (xl_comm.shared's mechanism, without its mailboxes and MACs): the
shared-memory floor. One thread blocks on stdin (a
pipe from the benchmark) and ends the process when the benchmark goes away, so a killed benchmark leaves no server
behind.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import threading
from typing import Any

import cloudpickle
import zmq


def _exit_with_parent() -> None:
    while os.read(sys.stdin.fileno(), 1):
        pass
    os._exit(0)


def serve(address: str, out_of_band: bool = False, shared: int | None = None) -> None:
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.connect(address)
    if shared is not None:
        _serve_shared(sock, socket.socket(fileno=shared))
        sock.close(linger=1000)
        context.term()
        return
    if out_of_band:
        _serve_out_of_band(sock)
        sock.close(linger=1000)
        context.term()
        return
    while True:
        request = sock.recv()
        if not request:
            sock.send(b"")
            break
        fn, args, kwargs = cloudpickle.loads(request)
        sock.send(cloudpickle.dumps(fn(*args, **kwargs)))
    sock.close(linger=1000)
    context.term()


def _serve_out_of_band(sock: Any) -> None:
    while True:
        frames = sock.recv_multipart(copy=False)
        if len(frames) == 1 and not frames[0].bytes:
            sock.send(b"")
            return
        fn, args, kwargs = pickle.loads(frames[0].buffer, buffers=[frame.buffer for frame in frames[1:]])
        sock.send_multipart(dumps_out_of_band(fn(*args, **kwargs)), copy=False)


def _serve_shared(sock: Any, side: socket.socket) -> None:
    while True:
        stream = sock.recv()
        if not stream:
            sock.send(b"")
            return
        fn, args, kwargs = loads_shared(stream, side)
        sock.send(dumps_shared(fn(*args, **kwargs), side))


def dumps_shared(obj: Any, side: socket.socket) -> bytes:
    """The pickle stream of ``obj``; its pickle-5 buffers go as sealed memfds through ``side`` first."""
    from xl_comm.shared import write_sealed

    buffers: list[pickle.PickleBuffer] = []
    stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    fds = [write_sealed(buffer.raw()) for buffer in buffers]
    try:
        socket.send_fds(side, [len(fds).to_bytes(4, "big")], fds)
    finally:
        for fd in fds:
            os.close(fd)
    return stream


def loads_shared(stream: bytes, side: socket.socket) -> Any:
    """Unpickle ``stream`` with the memfds that came through ``side``, each mapped copy-on-write, no copy."""
    from xl_comm.shared import map_buffers

    _, fds, _, _ = socket.recv_fds(side, 4, 253)
    sizes = [os.fstat(fd).st_size for fd in fds]
    return pickle.loads(stream, buffers=map_buffers(fds, sizes))


def dumps_out_of_band(obj: Any) -> list[Any]:
    """``[stream, buffer, ...]``: cloudpickle with every pickle-5 buffer out of band."""
    buffers: list[pickle.PickleBuffer] = []
    stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return [stream, *(buffer.raw() for buffer in buffers)]


if __name__ == "__main__":
    _options = sys.argv[2:]
    serve(
        sys.argv[1],
        out_of_band="--out-of-band" in _options,
        shared=int(_options[_options.index("--shared") + 1]) if "--shared" in _options else None,
    )

"""Floors: the raw zmq + cloudpickle round trip, and the cost of starting a Python with the worker's imports."""

from __future__ import annotations

import os
import pickle
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import cloudpickle
import zmq

from benchmarks.echo_server import dumps_out_of_band, dumps_shared, loads_shared

ROOT = Path(__file__).resolve().parent.parent


class EchoClient:
    """A REQ socket and the ``benchmarks.echo_server`` process connected to it, over the transport
    SingleNodeExecutor's workers use: a Linux abstract unix socket (it costs less per message than loopback
    TCP, so comparing against a TCP floor would flatter the executor).

    ``out_of_band=True``: the server expects :meth:`call_out_of_band` (a large payload's floor); ``shared=True``:
    :meth:`call_shared` (the shared-memory floor)."""

    def __init__(self, out_of_band: bool = False, shared: bool = False) -> None:
        self._context = zmq.Context()
        self._sock = self._context.socket(zmq.REQ)
        address = f"ipc://@xl-bench-floor-{os.getpid()}-{secrets.token_hex(4)}"
        self._sock.bind(address)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        options = ["--out-of-band"] if out_of_band else []
        self._side: socket.socket | None = None
        theirs = None
        if shared:
            self._side, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            options = ["--shared", str(theirs.fileno())]
        self._server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.echo_server", address, *options],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,  # the server exits when this pipe closes, i.e. when we do
            pass_fds=() if theirs is None else (theirs.fileno(),),
        )
        if theirs is not None:
            theirs.close()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One round trip: pickle ``(fn, args, {})``, send, receive, unpickle."""
        self._sock.send(cloudpickle.dumps((fn, args, {})))
        return cloudpickle.loads(self._sock.recv())

    def call_out_of_band(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One round trip with every pickle-5 buffer in a frame of its own, sent and received without a copy."""
        self._sock.send_multipart(dumps_out_of_band((fn, args, {})), copy=False)
        frames = self._sock.recv_multipart(copy=False)
        return pickle.loads(frames[0].buffer, buffers=[frame.buffer for frame in frames[1:]])

    def call_shared(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One round trip with every pickle-5 buffer in a sealed memfd, mapped on receipt (no MAC, no mailbox)."""
        assert self._side is not None, "EchoClient(shared=True) serves call_shared"
        self._sock.send(dumps_shared((fn, args, {}), self._side))
        return loads_shared(self._sock.recv(), self._side)

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
        self._sock.setsockopt(zmq.RCVTIMEO, 10_000)
        try:
            self._sock.send(b"")
            self._sock.recv()
            self._server.wait(timeout=10)
        finally:
            if self._server.poll() is None:
                self._server.kill()
                self._server.wait()
            if self._server.stdin is not None:
                self._server.stdin.close()
            self._sock.close(linger=0)
            self._context.term()

    def __enter__(self) -> EchoClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def python_start() -> None:
    """``python -c "import zmq, cloudpickle, xl_serial"``: the least a fresh worker process costs."""
    subprocess.run([sys.executable, "-c", "import zmq, cloudpickle, xl_serial"], check=True)


def bare_python_start() -> None:
    """``python -c pass``: a bare interpreter start, the floor of a fresh process per call (issue 17)."""
    subprocess.run([sys.executable, "-c", "pass"], check=True)

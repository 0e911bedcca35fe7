"""The floor's far end: ``python -m benchmarks.echo_server ADDRESS``.

A REP socket that connects to ADDRESS, unpickles ``(fn, args, kwargs)``, calls it and sends back the pickled
result; an empty message ends it. Nothing else: no framing, no MAC. One thread blocks on stdin (a pipe from the
benchmark) and ends the process when the benchmark goes away, so a killed benchmark leaves no server behind.
"""

from __future__ import annotations

import os
import sys
import threading

import cloudpickle
import zmq


def _exit_with_parent() -> None:
    while os.read(sys.stdin.fileno(), 1):
        pass
    os._exit(0)


def serve(address: str) -> None:
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.connect(address)
    while True:
        request = sock.recv()
        if not request:
            sock.send(b"")
            break
        fn, args, kwargs = cloudpickle.loads(request)
        sock.send(cloudpickle.dumps(fn(*args, **kwargs)))
    sock.close(linger=1000)
    context.term()


if __name__ == "__main__":
    serve(sys.argv[1])

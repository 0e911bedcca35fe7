"""The worker of executorlib 1.x's socket API, behind ``get_command_path("interactive_serial.py")`` and
``interactive_parallel.py``: ``python <script> [--host H] --zmqport P [--worker-id N]``.

It connects to the executor's SocketInterface and answers one dict at a time: ``{"shutdown": True, ...}`` ends
it; ``{"init": True, "fn", "args", "kwargs"}`` merges the dict ``fn`` returns into its memory;
``{"fn", "args", "kwargs"}`` calls ``fn`` with the memory entries it names as parameters. Only an Exception is
answered as ``{"error": ...}``: SystemExit and KeyboardInterrupt end the worker with their status, so the executor
sees a dead worker (the caller's process never re-raises them). The parallel worker runs each call on every MPI
rank; rank 0 talks to the executor and answers with the list of every rank's result.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq
from xl_comm import ExecutorGuard
from xl_serial import dumps, loads

from executorlib.compat.wire import API_KEY_ENV, LINGER_MS, interface_receive, interface_send

#: Seconds to wait for the executor to accept the connection.
CONNECT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome:
    """What one call gave on one rank: its value, or the Exception it raised."""

    value: Any = None
    error: Exception | None = None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="executorlib worker for executorlib.api.SocketInterface")
    parser.add_argument("--host", default="localhost", help="the executor's host")
    parser.add_argument("--zmqport", required=True, help="the port the executor bound")
    parser.add_argument("--worker-id", type=int, default=0, help="passed as executorlib_worker_id")
    return parser.parse_args(argv)


def main(argv: Sequence[str], *, parallel: bool) -> int:
    """Serve until told to shut down; the exit status."""
    args = parse_args(argv)
    if API_KEY_ENV not in os.environ:
        print(
            f"executorlib worker: {API_KEY_ENV} is not set, so no message of the executor can be authenticated; "
            "start workers from the process that made the SocketInterface (children inherit the variable)",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, os.getcwd())
    memory: dict[str, Any] = {"executorlib_worker_id": args.worker_id}
    comm = _world() if parallel else None
    if comm is not None and comm.Get_rank() != 0:
        return _follow(comm, memory)
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.PAIR)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 5_000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15_000)
    guard = ExecutorGuard(sock, CONNECT_TIMEOUT_SECONDS)  # ends this worker if the executor goes away
    sock.connect(f"tcp://{args.host}:{args.zmqport}")
    guarded = True
    try:
        while True:
            message = interface_receive(sock)
            if comm is not None:
                _share(comm, message)
            if message.get("shutdown"):
                sock.disable_monitor()
                guard.stop()  # the executor closes its end once it has the reply: that is no orphaning
                guarded = False
                interface_send(sock, {"result": True})
                return 0
            outcomes = [_run(message, memory)]
            if comm is not None:
                outcomes = _share_outcomes(comm, outcomes[0])
            _reply(sock, message, outcomes, parallel)
    finally:
        if guarded:  # leaving on an error, or SystemExit from a task: the guard's monitor socket goes first
            sock.disable_monitor()
            guard.stop()
        sock.close(linger=LINGER_MS)
        context.term()


def _follow(comm: Any, memory: dict[str, Any]) -> int:
    """An MPI rank other than 0: run what rank 0 broadcasts, send rank 0 the outcome."""
    while True:
        message = _share(comm, None)
        if message.get("shutdown"):
            return 0
        _share_outcomes(comm, _run(message, memory))


def _share(comm: Any, message: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's message on every rank. Pickled by us (cloudpickle, through xl_serial): mpi4py's plain pickle
    cannot send functions defined in a script or notebook."""
    frames = comm.bcast(None if message is None else _frames(message), root=0)
    shared: dict[str, Any] = loads(frames)
    return shared


def _share_outcomes(comm: Any, outcome: Outcome) -> list[Outcome]:
    """Every rank's outcome, in rank order, on rank 0 (an empty list on the others)."""
    gathered = comm.gather(_frames(outcome), root=0)
    return [] if gathered is None else [loads(frames) for frames in gathered]


def _frames(value: Any) -> list[bytes]:
    return [bytes(memoryview(frame)) for frame in dumps(value)]


def _run(message: dict[str, Any], memory: dict[str, Any]) -> Outcome:
    """Run one call (or init); an Exception is the outcome, anything else ends the worker."""
    try:
        fn = message["fn"]
        args = message.get("args", ())
        kwargs = dict(message.get("kwargs", {}))
        for name in _parameters(fn):
            if name in memory and name not in kwargs:
                kwargs[name] = memory[name]
        value = fn(*args, **kwargs)
        if message.get("init"):
            memory.update(value)
            value = True
        return Outcome(value=value)
    except Exception as problem:
        log_file = message.get("error_log_file")
        if log_file is not None:
            with open(log_file, "a") as log:
                log.write("".join(traceback.format_exception(problem)))
        return Outcome(error=problem)


def _parameters(fn: Any) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # some builtins have no signature
        return []


def _reply(sock: zmq.Socket[Any], message: dict[str, Any], outcomes: list[Outcome], parallel: bool) -> None:
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    if errors:
        reply: dict[str, Any] = {"error": errors[0]}
    elif message.get("init"):
        reply = {"result": True}
    else:
        values = [outcome.value for outcome in outcomes]
        reply = {"result": values if parallel else values[0]}
    try:
        interface_send(sock, reply)
    except Exception as problem:  # a result or error that does not pickle fails this call only
        interface_send(sock, {"error": TypeError(f"the reply could not be pickled: {problem!r}")})


def _world() -> Any:
    try:
        from mpi4py import MPI
    except ImportError:
        print(
            "executorlib worker: interactive_parallel.py needs mpi4py; pip install 'executorlib[mpi]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    return MPI.COMM_WORLD

"""Run a worker: ``python -m xl_comm.worker --address tcp://HOST:PORT --worker-id N [--worker-index I] [--one-shot]``.

The key comes from the environment (see :mod:`xl_comm.keys`), never from the command line. The worker connects
out to its executor (it listens on no port), says hello, then runs what it is sent until told to stop. A watchdog
thread ends the worker, and the process group it leads, as soon as the executor's end of the connection goes away,
so a killed executor leaves no workers behind.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import zmq

from xl_comm.keys import load_key
from xl_comm.messages import Hello
from xl_comm.shared import worker_mailbox
from xl_comm.watchdog import start_watchdog
from xl_comm.worker_loop import WorkerLoop, close, connect, fast_exit, leave

# This module is only the command line; the loop is xl_comm.worker_loop, which the MPI ranks share without
# importing this module (a module run with -m would otherwise be imported a second time).

_FLAGS = {"--address": str, "--worker-id": int, "--worker-index": int, "--connect-timeout": float}


def parse_args(argv: Sequence[str] | None) -> SimpleNamespace:
    """The executor's own command lines are parsed by hand (argparse costs milliseconds per worker start);
    anything else, --help included, goes to argparse for its messages."""
    words = list(sys.argv[1:] if argv is None else argv)
    parsed: dict[str, Any] = {"worker_index": 0, "one_shot": False, "mpi": False, "connect_timeout": 60.0}
    try:
        while words:
            flag = words.pop(0)
            if flag in ("--one-shot", "--mpi"):
                parsed[flag[2:].replace("-", "_")] = True
            else:
                parsed[flag[2:].replace("-", "_")] = _FLAGS[flag](words.pop(0))
        if "address" in parsed and "worker_id" in parsed:
            return SimpleNamespace(**parsed)
    except (KeyError, IndexError, ValueError):
        pass
    return _argparse(argv)


def _argparse(argv: Sequence[str] | None) -> SimpleNamespace:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xl_comm.worker", description=__doc__)
    parser.add_argument("--address", required=True, help="the executor's zmq address, tcp://HOST:PORT")
    parser.add_argument("--worker-id", type=int, required=True, help="the id the executor gave this process")
    parser.add_argument(
        "--worker-index",
        type=int,
        default=0,
        help="the worker's index, handed to functions as executorlib_worker_index (and as executorlib_worker_id "
        "unless --one-shot, where that is 0)",
    )
    parser.add_argument("--one-shot", action="store_true", help="exit after the first task")
    parser.add_argument("--mpi", action="store_true", help="run every task on all MPI ranks (mpi4py)")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="seconds to wait for the executor")
    return SimpleNamespace(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    faulthandler.enable()  # a segfault in user code prints its native stack before the executor reports it
    start_watchdog()  # only where the spawner asked for one: the kernel's lifeline is missing or disabled
    if args.mpi:
        from xl_comm.mpi_worker import run_rank

        return run_rank(args)  # rank 0 reads the key and shares it
    key = load_key()
    context = zmq.Context(io_threads=1)
    sock, guard = connect(context, args.address, args.connect_timeout)
    mailbox = worker_mailbox(key, args.address, args.worker_id)  # registered before the hello: see xl_comm.shared
    loop = WorkerLoop(sock, key, args.worker_id, args.worker_index, one_shot=args.one_shot, mailbox=mailbox)
    loop.send(Hello(pid=os.getpid(), host=os.uname().nodename))
    departing = loop.serve(one_shot=args.one_shot)
    close(context, sock, guard)  # lingers until the answers already made have left
    if departing is not None:  # user code raised SystemExit or KeyboardInterrupt: the executor sees a death
        leave(loop.origin, departing)
    if args.one_shot:
        fast_exit()  # the reply is delivered
    return 0


if __name__ == "__main__":
    sys.exit(main())

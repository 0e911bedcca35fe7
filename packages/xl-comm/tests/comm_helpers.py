"""A recording HubHandler and a worker starter for the xl-comm tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

from xl_comm.hub import Hub
from xl_comm.messages import Failure, Hello, Result

WAIT = 30.0


class Recorder:
    def __init__(self) -> None:
        self.hellos: dict[int, Hello] = {}
        self.replies: list[tuple[int, int, Result | Failure]] = []
        self.exits: list[int] = []
        self.changed = threading.Condition()

    def on_hello(self, worker_id: int, hello: Hello) -> None:
        with self.changed:
            self.hellos[worker_id] = hello
            self.changed.notify_all()

    def on_reply(self, worker_id: int, task_id: int, reply: Result | Failure) -> None:
        with self.changed:
            self.replies.append((worker_id, task_id, reply))
            self.changed.notify_all()

    def on_exit(self, worker_id: int) -> None:
        with self.changed:
            self.exits.append(worker_id)
            self.changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float = WAIT) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), "timed out waiting for the hub"


def start_worker(hub: Hub, worker_id: int, *extra: str) -> subprocess.Popen[bytes]:
    # the worker imports test modules (functions sent by reference) from this folder
    process = worker_process(hub, worker_id, *extra)
    hub.expect(worker_id, os.pidfd_open(process.pid))
    return process


def raise_base(kind: type[BaseException]) -> None:
    raise kind("raised while unpickling")


class LoadRaises:
    """Pickles fine; unpickling it raises ``kind`` (e.g. SystemExit), as a hostile or careless ``__reduce__`` may."""

    def __init__(self, kind: type[BaseException]) -> None:
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (raise_base, (self.kind,))


def returns_load_raises(kind: type[BaseException]) -> LoadRaises:
    return LoadRaises(kind)


def worker_process(hub: Hub, worker_id: int, *extra: str) -> subprocess.Popen[bytes]:
    """A worker the hub does not expect yet (the caller expects it later)."""
    return subprocess.Popen(
        [sys.executable, "-m", "xl_comm.worker", *hub.worker_args(worker_id), *extra],
        env={**os.environ, **hub.worker_env(), "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))},
        start_new_session=True,
    )


def call_sys_exit(code: Any) -> None:
    raise SystemExit(code)

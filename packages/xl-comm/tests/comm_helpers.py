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
    process = subprocess.Popen(
        [sys.executable, "-m", "xl_comm.worker", *hub.worker_args(worker_id), *extra],
        # the worker imports test modules (functions sent by reference) from this folder
        env={**os.environ, **hub.worker_env(), "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))},
        start_new_session=True,
    )
    hub.expect(worker_id, os.pidfd_open(process.pid))
    return process

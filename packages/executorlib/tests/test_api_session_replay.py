"""executorlib.api's socket interface across a worker restart: the sequence numbers start again with the new worker,
so each worker session has its own id in the authenticated header. A reply recorded from the worker before the
restart is refused in the new session before anything is unpickled, while the 1.x restart pattern (``bootup()``
again with the remembered command) keeps working."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq
from executorlib.api import (
    AuthenticationError,
    ExecutorlibSocketError,
    SubprocessSpawner,
    cloudpickle_register,
    get_command_path,
    interface_bootup,
    interface_receive,
    interface_send,
)

# The 1.x idiom: functions of this module travel by value, so the workers need not import this test file.
cloudpickle_register(ind=1)

SERIAL = get_command_path("interactive_serial.py")
TIMEOUT_MS = 30_000


def touch(path: str) -> None:
    Path(path).touch()


class Trap:
    """Unpickling this creates a file: proof that a body was (or was not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (touch, (self.path,))


def make_trap(path: str) -> Trap:
    return Trap(path)


def add(a: int, b: int) -> int:
    return a + b


def die() -> None:
    os._exit(3)


CRASHED = {"fn": die, "args": (), "kwargs": {}}


def crash(interface: Any) -> None:
    """The worker dies in a task and the interface notices, as 1.x's executors see a worker die before they
    restart it with ``bootup()``."""
    reply = interface.send_and_receive_dict(CRASHED)
    assert isinstance(reply["error"], ExecutorlibSocketError)


@pytest.mark.timeout(90)
def test_a_reply_recorded_before_a_restart_is_refused_after_it(tmp_path: Path) -> None:
    trap = tmp_path / "unpickled"
    command = [sys.executable, SERIAL]
    interface = interface_bootup(command, connections=SubprocessSpawner(), hostname_localhost=True)
    port = int(command[command.index("--zmqport") + 1])
    context: zmq.Context[Any] = zmq.Context()
    intruder = context.socket(zmq.PAIR)
    try:
        # session 1: record the worker's raw reply, as an eavesdropper on the wire would (never unpickled here)
        interface.send_dict({"fn": make_trap, "args": (str(trap),), "kwargs": {}})
        sock = interface._socket
        assert sock is not None and sock.poll(TIMEOUT_MS, zmq.POLLIN)
        recorded = sock.recv_multipart()
        assert not trap.exists()
        crash(interface)

        # the intruder pairs with the free socket first and replays the recorded reply into session 2
        intruder.connect(f"tcp://localhost:{port}")
        intruder.send_multipart(recorded)
        interface.bootup()
        assert interface.status
        with pytest.raises(AuthenticationError, match=r"another worker session.*restarted"):
            interface.receive_dict()
        assert not trap.exists(), "the replayed body was unpickled"
    finally:
        intruder.close(linger=0)
        context.term()
        interface._spawner.shutdown(wait=True)  # the new worker never paired (the intruder holds the socket)
        interface.shutdown(wait=False)


@pytest.mark.timeout(90)
def test_a_restarted_worker_answers_in_its_new_session() -> None:
    command = [sys.executable, SERIAL]
    interface = interface_bootup(command, connections=SubprocessSpawner(), hostname_localhost=True)
    try:
        assert interface.send_and_receive_dict({"fn": add, "args": (1, 2), "kwargs": {}}) == {"result": 3}
        crash(interface)
        interface.bootup()  # the remembered command: a new worker, a new session
        assert interface.send_and_receive_dict({"fn": add, "args": (2, 3), "kwargs": {}}) == {"result": 5}
        assert interface.shutdown(wait=True) is True
    finally:
        interface.shutdown(wait=True)


def test_raw_sockets_without_a_session_still_talk() -> None:
    """1.x's interface_send on a plain bound PAIR and interface_receive on its peer: no session on either side."""
    context: zmq.Context[Any] = zmq.Context()
    bound, peer = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    bound.rcvtimeo = bound.sndtimeo = peer.rcvtimeo = peer.sndtimeo = TIMEOUT_MS
    try:
        port = bound.bind_to_random_port("tcp://*")
        peer.connect(f"tcp://localhost:{port}")
        interface_send(bound, {"x": [1, 2]})
        assert interface_receive(peer) == {"x": [1, 2]}
        interface_send(peer, {"y": 3})
        assert interface_receive(bound) == {"y": 3}
    finally:
        bound.close(linger=0)
        peer.close(linger=0)
        context.term()

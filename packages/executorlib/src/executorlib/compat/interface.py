"""executorlib 1.x's ``SocketInterface``: the executor's end of one worker connection (a PAIR socket and a
spawner), and ``interface_bootup``, which starts a worker connected to a new one."""

from __future__ import annotations

import contextlib
import logging
import socket as socket_module
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from executorlib.compat.wire import LINGER_MS, api_key, interface_receive, interface_send, new_peer
from executorlib.errors import ExecutorlibSocketError

logger = logging.getLogger("executorlib")


class Spawner(Protocol):
    """What SocketInterface asks of a spawner (1.x's spawner interface)."""

    def bootup(self, command_lst: list[str], stop_function: Callable[[], bool] | None = None) -> bool: ...

    def poll(self) -> bool: ...

    def shutdown(self, wait: bool = True) -> None: ...


class SocketInterface:
    """One PAIR socket, bound on all interfaces because workers may run on other nodes. A process that connects
    first can block the pairing (as in 1.x) but cannot speak for the worker: every message is authenticated.

    Args:
        spawner: What starts, polls and stops the worker process (a ``SubprocessSpawner``, ``MpiExecSpawner`` or
            a subclass); ``bootup`` needs one. None (default): none yet.
        log_obj_size: True: ``send_dict`` logs ``Send dictionary of size: N`` (pickled bytes) at WARNING on the
            logger ``executorlib``. Default False.
        time_out_ms: Milliseconds ``receive_dict`` waits for a reply before it asks the spawner whether the worker
            still runs (and returns an ExecutorlibSocketError once it does not). Default 1000.
    """

    def __init__(self, spawner: Spawner | None = None, log_obj_size: bool = False, time_out_ms: int = 1000) -> None:
        api_key()  # in os.environ before any worker starts, so the worker inherits it
        self._context: zmq.Context[Any] | None = zmq.Context()
        self._socket: zmq.Socket[Any] | None = self._context.socket(zmq.PAIR)
        self._spawner = spawner
        self._log_obj_size = log_obj_size
        self._time_out_ms = time_out_ms
        self._command_lst: list[str] = []
        self._stop_function: Callable[[], bool] | None = None
        self._booted = False

    @property
    def status(self) -> bool:
        """True after a successful ``bootup``."""
        return self._booted

    @status.setter
    def status(self, status: bool) -> None:
        self._booted = status

    def bind_to_random_port(self) -> int:
        """Bind on all interfaces; the port the worker is to connect to."""
        return self._open_socket().bind_to_random_port("tcp://*")

    def bootup(self, command_lst: list[str] | None = None, stop_function: Callable[[], bool] | None = None) -> None:
        """Start the worker; without a command, the last one again (how a worker restarts)."""
        if command_lst is not None:
            self._command_lst = command_lst
        if stop_function is not None:
            self._stop_function = stop_function
        if not self._command_lst:
            raise ValueError(
                "SocketInterface.bootup() has no command: pass command_lst the first time (later calls reuse it)"
            )
        if self._spawner is None:
            raise ValueError("SocketInterface.bootup() needs a spawner: SocketInterface(spawner=SubprocessSpawner())")
        new_peer(self._open_socket())  # a new session: nothing recorded from an earlier worker is accepted
        self._booted = bool(self._spawner.bootup(command_lst=self._command_lst, stop_function=self._stop_function))
        if not self._booted:
            self._close()

    def send_dict(self, input_dict: dict[str, Any]) -> None:
        """Send one dict to the worker."""
        if self._log_obj_size:
            from xl_serial import dumps, frames_nbytes

            logger.warning("Send dictionary of size: %d", frames_nbytes(dumps(input_dict)))
        interface_send(self._open_socket(), input_dict)

    def receive_dict(self) -> dict[str, Any]:
        """The worker's next dict; ``{"error": ExecutorlibSocketError(...)}`` once the worker process is gone."""
        sock = self._open_socket()
        while not sock.poll(self._time_out_ms, zmq.POLLIN):
            if self._spawner is None or not self._spawner.poll():
                return {"error": ExecutorlibSocketError("SocketInterface crashed during execution.")}
        return interface_receive(sock)

    def send_and_receive_dict(self, input_dict: dict[str, Any]) -> dict[str, Any]:
        """Send one dict, then wait for the reply."""
        self.send_dict(input_dict)
        return self.receive_dict()

    def shutdown(self, wait: bool = True) -> Any:
        """Tell a running worker to stop and stop its process; close the socket. The worker's reply, or None."""
        result = None
        spawner = self._spawner
        if spawner is not None and spawner.poll():
            if self._socket is not None:
                result = self.send_and_receive_dict({"shutdown": True, "wait": wait}).get("result")
            spawner.shutdown(wait=wait)
        self._close()
        return result

    def _open_socket(self) -> zmq.Socket[Any]:
        if self._socket is None:
            raise ExecutorlibSocketError("this SocketInterface is shut down (or its worker refused to start)")
        return self._socket

    def _close(self) -> None:
        sock, context, self._socket, self._context = self._socket, self._context, None, None
        if sock is not None:
            sock.close(linger=LINGER_MS)
        if context is not None:
            context.term()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.shutdown(wait=True)


def interface_bootup(
    command_lst: list[str],
    connections: Spawner,
    hostname_localhost: bool | None = None,
    log_obj_size: bool = False,
    worker_id: int | None = None,
    stop_function: Callable[[], bool] | None = None,
) -> SocketInterface:
    """Start a worker connected to a new SocketInterface. ``command_lst`` is extended in place with the
    worker's ``--host``, ``--worker-id`` and ``--zmqport`` arguments, as in 1.x."""
    if not hostname_localhost:
        command_lst += ["--host", socket_module.gethostname()]
    if worker_id is not None:
        command_lst += ["--worker-id", str(worker_id)]
    interface = SocketInterface(spawner=connections, log_obj_size=log_obj_size)
    command_lst += ["--zmqport", str(interface.bind_to_random_port())]
    interface.bootup(command_lst, stop_function=stop_function)
    return interface

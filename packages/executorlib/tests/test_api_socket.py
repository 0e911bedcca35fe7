"""executorlib 1.x's socket API in executorlib.api: real worker processes, real zmq sockets, every message
authenticated (compat-1x.md §2)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import zmq
from executorlib import api
from executorlib.api import (
    AuthenticationError,
    ExecutorlibSocketError,
    MpiExecSpawner,
    SocketInterface,
    SubprocessSpawner,
    cancel_items_in_queue,
    cloudpickle_register,
    get_command_path,
    interface_bootup,
    interface_connect,
    interface_receive,
    interface_send,
    interface_shutdown,
)
from executorlib.compat.wire import API_KEY_ENV, api_key
from hypothesis import given
from hypothesis import strategies as st
from xl_comm import Header, Kind, seal
from xl_serial import dumps

# The 1.x idiom: functions of this module travel by value, so the workers need not import this test file.
cloudpickle_register(ind=1)

TIMEOUT_MS = 20_000
SERIAL = get_command_path("interactive_serial.py")


def add(a: int, b: int) -> int:
    return a + b


def whoami(executorlib_worker_id: int = -1) -> int:
    return executorlib_worker_id


def where() -> str:
    return os.getcwd()


def env_value(name: str) -> str | None:
    return os.environ.get(name)


def boom(text: str) -> None:
    raise ValueError(text)


def leave(status: int) -> None:
    sys.exit(status)


def init_memory() -> dict[str, int]:
    return {"offset": 100}


def with_offset(x: int, offset: int = 0) -> int:
    return x + offset


def mpi_rank() -> int:
    from mpi4py import MPI

    return int(MPI.COMM_WORLD.Get_rank())


def touch(path: str) -> None:
    Path(path).touch()


class Trap:
    """Unpickling this creates a file: proof that a body was (or was not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (touch, (self.path,))


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    """A plain PAIR bound as 1.x binds it, and the socket interface_connect makes for it."""
    context: zmq.Context[Any] = zmq.Context()
    bound = context.socket(zmq.PAIR)
    bound.rcvtimeo = bound.sndtimeo = TIMEOUT_MS
    port = bound.bind_to_random_port("tcp://*")
    peer_context, peer = interface_connect("localhost", str(port))
    peer.rcvtimeo = peer.sndtimeo = TIMEOUT_MS
    yield bound, peer
    interface_shutdown(peer, peer_context)
    bound.close(linger=0)
    context.term()


def test_api_has_the_thirteen_names_of_1x() -> None:
    names = {
        "TestClusterExecutor",
        "ExecutorlibSocketError",
        "SocketInterface",
        "interface_bootup",
        "interface_connect",
        "interface_send",
        "interface_receive",
        "interface_shutdown",
        "SubprocessSpawner",
        "MpiExecSpawner",
        "get_command_path",
        "cancel_items_in_queue",
        "cloudpickle_register",
    }
    assert names <= set(api.__all__)
    assert issubclass(AuthenticationError, ExecutorlibSocketError)


def test_a_dict_sent_on_a_bound_pair_arrives_exactly(pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]) -> None:
    bound, peer = pair
    interface_send(bound, {"x": [1, 2]})
    assert interface_receive(peer) == {"x": [1, 2]}
    interface_send(peer, {"result": 3})
    assert interface_receive(bound) == {"result": 3}


def test_none_sockets_do_nothing() -> None:
    interface_send(None, {"x": 1})
    assert interface_receive(None) == {}
    interface_shutdown(None, None)


def test_the_key_lives_in_the_environment_as_hex() -> None:
    key = api_key()
    assert os.environ[API_KEY_ENV] == key.hex() and len(key) == 32


def test_a_tampered_frame_is_refused_and_never_unpickled(
    pair: tuple[zmq.Socket[Any], zmq.Socket[Any]], tmp_path: Path
) -> None:
    bound, peer = pair
    trap = tmp_path / "unpickled"
    frames = seal(api_key(), Header(Kind.API_DICT, 0, 1, 0), dumps({"x": Trap(str(trap))}))
    envelope = bytearray(bytes(frames[0]))
    envelope[-40] ^= 1  # a byte of the pickle stream, just before the MAC
    bound.send_multipart([bytes(envelope), *frames[1:]])
    with pytest.raises(AuthenticationError, match="not an authenticated executorlib message"):
        interface_receive(peer)
    assert not trap.exists()


def test_a_bare_1x_cloudpickle_message_is_refused_and_never_unpickled(
    pair: tuple[zmq.Socket[Any], zmq.Socket[Any]], tmp_path: Path
) -> None:
    bound, peer = pair
    trap = tmp_path / "unpickled"
    bound.send(cloudpickle.dumps({"result": Trap(str(trap))}))  # what a 1.x worker sends
    with pytest.raises(AuthenticationError):
        interface_receive(peer)
    assert not trap.exists()


def test_a_message_under_another_key_is_refused(pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]) -> None:
    bound, peer = pair
    bound.send_multipart(seal(bytes(32), Header(Kind.API_DICT, 0, 1, 0), dumps({"x": 1})))
    with pytest.raises(AuthenticationError):
        interface_receive(peer)


def test_a_replayed_message_is_refused(pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]) -> None:
    bound, peer = pair
    interface_send(bound, {"n": 1})
    captured = peer.recv_multipart()  # what an eavesdropper recorded
    bound.send_multipart(captured)
    bound.send_multipart(captured)
    assert interface_receive(peer) == {"n": 1}
    with pytest.raises(AuthenticationError, match="replayed"):
        interface_receive(peer)
    interface_send(bound, {"n": 2})
    assert interface_receive(peer) == {"n": 2}


@pytest.mark.timeout(60)
def test_interface_bootup_runs_a_function_in_a_real_worker() -> None:
    command = [sys.executable, SERIAL]
    interface = interface_bootup(command, connections=SubprocessSpawner(), worker_id=4)
    try:
        assert isinstance(interface, SocketInterface) and interface.status
        host = command.index("--host")
        assert command[host + 1] == __import__("socket").gethostname()
        assert command[command.index("--worker-id") + 1] == "4"
        assert int(command[command.index("--zmqport") + 1]) > 0
        assert os.environ[API_KEY_ENV] not in " ".join(command)
        assert interface.send_and_receive_dict({"fn": add, "args": (1, 2), "kwargs": {}}) == {"result": 3}
        assert interface.send_and_receive_dict({"fn": whoami, "args": (), "kwargs": {}}) == {"result": 4}
        reply = interface.send_and_receive_dict({"fn": boom, "args": ("no",), "kwargs": {}})
        assert isinstance(reply["error"], ValueError) and str(reply["error"]) == "no"
        assert interface.send_and_receive_dict({"init": True, "fn": init_memory, "args": (), "kwargs": {}}) == {
            "result": True
        }
        assert interface.send_and_receive_dict({"fn": with_offset, "args": (1,), "kwargs": {}}) == {"result": 101}
        process = interface._spawner._process
        assert interface.shutdown(wait=True) is True
        assert process is not None and process.returncode == 0
        assert interface._spawner._process is None
    finally:
        interface.shutdown(wait=True)


@pytest.mark.timeout(60)
def test_an_error_is_appended_to_the_error_log_file(tmp_path: Path) -> None:
    log = tmp_path / "errors.txt"
    interface = interface_bootup([sys.executable, SERIAL], connections=SubprocessSpawner(), hostname_localhost=True)
    try:
        message = {"fn": boom, "args": ("logged",), "kwargs": {}, "error_log_file": str(log)}
        assert isinstance(interface.send_and_receive_dict(message)["error"], ValueError)
        assert "ValueError: logged" in log.read_text()
    finally:
        interface.shutdown(wait=True)


@pytest.mark.timeout(60)
def test_sys_exit_in_a_task_ends_the_worker_not_the_caller() -> None:
    interface = interface_bootup([sys.executable, SERIAL], connections=SubprocessSpawner(), hostname_localhost=True)
    try:
        process = interface._spawner._process
        reply = interface.send_and_receive_dict({"fn": leave, "args": (3,), "kwargs": {}})
        assert isinstance(reply["error"], ExecutorlibSocketError)
        assert str(reply["error"]) == "SocketInterface crashed during execution."
        assert process is not None and process.wait(timeout=10) == 3
    finally:
        assert interface.shutdown(wait=True) is None


class CondaStyleSpawner(SubprocessSpawner):
    """What pyiron's conda_subprocess does: its own Popen (which copies os.environ), no env= given."""

    def bootup(self, command_lst: list[str], stop_function: Any = None) -> bool:
        self._process = subprocess.Popen(self.generate_command(command_lst), cwd=self._cwd, stdin=subprocess.DEVNULL)
        return self.poll()


class RefusingSpawner(SubprocessSpawner):
    def bootup(self, command_lst: list[str], stop_function: Any = None) -> bool:
        return False


@pytest.mark.timeout(60)
def test_a_conda_subprocess_style_subclass_works(tmp_path: Path) -> None:
    interface = SocketInterface(spawner=CondaStyleSpawner(cwd=str(tmp_path)))
    port = interface.bind_to_random_port()
    interface.bootup([sys.executable, SERIAL, "--host", "localhost", "--zmqport", str(port)])
    try:
        assert interface.status
        assert interface.send_and_receive_dict({"fn": where, "args": (), "kwargs": {}}) == {"result": str(tmp_path)}
        process = interface._spawner._process
        assert interface.shutdown(wait=True) is True
        assert process is not None and process.returncode == 0
    finally:
        interface.shutdown(wait=True)


def test_a_refused_bootup_leaves_status_false_and_shuts_down_quietly() -> None:
    interface = SocketInterface(spawner=RefusingSpawner())
    interface.bootup(["true"])
    assert interface.status is False
    assert interface.shutdown(wait=True) is None
    assert interface.shutdown(wait=True) is None  # twice, and __del__ later: never raises


def test_bootup_without_any_command_names_the_fix() -> None:
    interface = SocketInterface(spawner=SubprocessSpawner())
    with pytest.raises(ValueError, match="pass command_lst"):
        interface.bootup()
    assert interface.shutdown() is None  # a spawner that never started


@pytest.mark.timeout(60)
def test_subprocess_spawner_is_shaped_as_in_1x(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spawner = SubprocessSpawner(cwd=str(tmp_path / "new"), cores=2, worker_id=1, threads_per_core=3)
    assert (spawner._cwd, spawner._cores, spawner._worker_id, spawner._threads_per_core) == (
        str(tmp_path / "new"),
        2,
        1,
        3,
    )
    assert not spawner.poll() and spawner._process is None
    assert spawner.bootup([sys.executable, "-c", "import time; time.sleep(60)"]) is True
    assert spawner.poll() is True and (tmp_path / "new").is_dir()
    process = spawner._process
    assert isinstance(process, subprocess.Popen)
    assert os.getpgid(process.pid) == process.pid, "the worker leads its own process group"
    spawner.shutdown(wait=True)
    assert spawner._process is None and not spawner.poll() and process.returncode is not None


@pytest.mark.timeout(60)
def test_the_child_gets_the_submitters_cwd_on_pythonpath_and_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = os.environ.get("PYTHONPATH")
    code = f"import os; open('seen', 'w').write(os.environ['PYTHONPATH'] + '\\n' + os.environ['{API_KEY_ENV}'])"
    spawner = SubprocessSpawner()
    spawner.bootup([sys.executable, "-c", code])
    process = spawner._process
    assert process is not None and process.wait(timeout=30) == 0
    pythonpath, key = (tmp_path / "seen").read_text().split("\n")
    assert pythonpath.split(os.pathsep)[0] == str(tmp_path)
    assert key == os.environ[API_KEY_ENV]
    assert os.environ.get("PYTHONPATH") == before, "the parent's environment is untouched"
    spawner.shutdown(wait=True)


def test_mpiexec_spawner_prepends_mpiexec() -> None:
    assert MpiExecSpawner(cores=2).generate_command(["python", "w.py"]) == ["mpiexec", "-n", "2", "python", "w.py"]
    assert MpiExecSpawner(cores=1).generate_command(["python", "w.py"]) == ["python", "w.py"]


@given(st.integers(1, 1024), st.booleans(), st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4))
def test_mpiexec_command_property(cores: int, oversubscribe: bool, command: list[str]) -> None:
    built = MpiExecSpawner(cores=cores, openmpi_oversubscribe=oversubscribe).generate_command(list(command))
    if cores == 1:
        assert built == command
    else:
        assert built == ["mpiexec", "-n", str(cores), *(["--oversubscribe"] if oversubscribe else []), *command]


@pytest.mark.timeout(90)
def test_the_parallel_worker_answers_with_every_ranks_result() -> None:
    interface = interface_bootup(
        [sys.executable, get_command_path("interactive_parallel.py")],
        connections=MpiExecSpawner(cores=2),
        hostname_localhost=True,
    )
    try:
        assert interface.send_and_receive_dict({"fn": mpi_rank, "args": (), "kwargs": {}}) == {"result": [0, 1]}
        assert interface.shutdown(wait=True) is True
    finally:
        interface.shutdown(wait=True)


def test_get_command_path_points_into_the_backend_folder() -> None:
    path = get_command_path("interactive_serial.py")
    assert os.path.isabs(path) and os.path.isfile(path)
    assert path == os.path.join(os.path.dirname(api.__file__), "backend", "interactive_serial.py")
    for script in ("interactive_parallel.py", "cache_serial.py", "cache_parallel.py"):
        assert os.path.isfile(get_command_path(script))
    assert get_command_path("nothing.py").endswith(os.path.join("backend", "nothing.py"))


def test_cancel_items_in_queue_empties_it_without_blocking() -> None:
    que: queue.Queue[Any] = queue.Queue()
    first: Future[Any] = Future()
    second: Future[Any] = Future()
    running: Future[Any] = Future()
    running.set_running_or_notify_cancel()
    for item in ({"future": first}, {"future": second}, {"shutdown": True}, {"future": running}):
        que.put(item)
    cancel_items_in_queue(que)
    assert que.qsize() == 0
    for future in (first, second):
        assert future.done()
        with pytest.raises(CancelledError):
            future.result(timeout=0)
    assert not running.cancelled() and not running.done()
    que.task_done()  # the {"shutdown": True} item is dropped without task_done: the caller owes it
    que.join()  # returns at once


def test_cloudpickle_register_ind_1_registers_the_calling_module() -> None:
    assert __name__ in cloudpickle.list_registry_pickle_by_value()


def test_cloudpickle_register_never_raises_on_a_short_stack() -> None:
    code = "from executorlib.api import cloudpickle_register\ncloudpickle_register(ind=1)\ncloudpickle_register(ind=50)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

"""Real worker processes against a real hub over loopback zmq."""

from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import zmq
from comm_helpers import Recorder, start_worker
from xl_comm.framing import Header, pack_body, seal
from xl_comm.hub import Hub
from xl_comm.keys import KeyFiles
from xl_comm.messages import Failure, Init, Kind, Result, Shutdown, Task
from xl_comm.worker_loop import EXIT_ORPHANED


@pytest.fixture
def hub_and_recorder(request):
    recorder = Recorder()
    hub = Hub(recorder, same_host=getattr(request, "param", False))
    yield hub, recorder
    hub.close()


def test_task_round_trip_and_clean_shutdown(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1)
    rec.wait_for(lambda: 1 in rec.hellos)
    assert rec.hellos[1].pid == process.pid
    hub.send(1, Task(pow, (2, 10)), task_id=5)
    rec.wait_for(lambda: rec.replies)
    assert rec.replies == [(1, 5, Result(1024))]
    hub.send(1, Shutdown())
    assert process.wait(timeout=10) == 0
    rec.wait_for(lambda: rec.exits == [1])


def _presets(a: int, executorlib_worker_id: int = -1, k: int = 0) -> tuple[int, int, int]:
    return a, executorlib_worker_id, k


def test_init_presets_and_worker_index(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1, "--worker-index", "3")
    rec.wait_for(lambda: 1 in rec.hellos)
    hub.send(1, Init(lambda: {"k": 7}))
    hub.send(1, Task(_presets, (1,)), task_id=1)
    hub.send(1, Task(_presets, (1,), {"k": 100}), task_id=2)
    rec.wait_for(lambda: len(rec.replies) == 2)
    assert [r.value for _, _, r in rec.replies] == [(1, 3, 7), (1, 3, 100)]
    hub.send(1, Shutdown())
    process.wait(timeout=10)


def _ids(executorlib_worker_id: int = -1, executorlib_worker_index: int = -1) -> tuple[int, int]:
    return executorlib_worker_id, executorlib_worker_index


def test_a_one_shot_worker_passes_worker_id_0_and_its_index(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1, "--worker-index", "3", "--one-shot")
    rec.wait_for(lambda: 1 in rec.hellos)
    hub.send(1, Task(_ids), task_id=1)
    rec.wait_for(lambda: rec.replies)
    assert rec.replies[0][2] == Result((0, 3))
    assert process.wait(timeout=10) == 0


def test_remote_exception_keeps_its_type(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1, "--one-shot")
    rec.wait_for(lambda: 1 in rec.hellos)
    hub.send(1, Task(int, ("not a number",)), task_id=9)
    rec.wait_for(lambda: rec.replies)
    _, task_id, reply = rec.replies[0]
    assert task_id == 9 and isinstance(reply, Failure)
    exc = reply.error.rebuild()
    assert isinstance(exc, ValueError) and "worker 1" in str(exc.__cause__)
    assert process.wait(timeout=10) == 0, "--one-shot exits after the task"


def test_worker_death_is_reported_within_a_second(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1)
    rec.wait_for(lambda: 1 in rec.hellos)
    hub.send(1, Task(time.sleep, (60,)), task_id=1)
    time.sleep(0.2)
    killed = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    rec.wait_for(lambda: rec.exits == [1], timeout=5)
    assert time.monotonic() - killed < 1.0
    assert process.wait(timeout=5) == -signal.SIGKILL


class _Payload:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("hub_and_recorder", [False, True], ids=["loopback-tcp", "abstract-unix"], indirect=True)
def test_rogue_client_gets_nothing_run_and_nothing_accepted(hub_and_recorder, tmp_path: Path, request) -> None:
    hub, rec = hub_and_recorder
    same_host = request.node.callspec.params["hub_and_recorder"]
    assert hub.address.startswith("ipc://@xl-comm-" if same_host else "tcp://127.0.0.1:")
    process = start_worker(hub, 1)
    rec.wait_for(lambda: 1 in rec.hellos)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker))
    context = zmq.Context()
    rogue = context.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(hub.address)
    try:
        forged_header = Header(Kind.RESULT, 1, 99, 1)
        attempts = [
            [evil],  # a bare pickle, as the released executorlib accepts
            [b"XL", b"", evil],  # shaped like a message
            seal(os.urandom(32), forged_header, pack_body(Result(_Payload(marker)))),  # valid shape, wrong key
            seal(os.urandom(32), Header(Kind.HELLO, 1, 100, 0), [evil]),  # a hello claiming worker 1
        ]
        for frames in attempts:
            rogue.send_multipart(frames)
        deadline = time.monotonic() + 10
        while hub.rejected < len(attempts) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rogue.close()
        context.term()
    assert hub.rejected == len(attempts)
    assert not marker.exists(), "a pickle from an unauthenticated peer was loaded"
    assert rec.replies == [], "a reply from an unauthenticated peer was accepted"
    # the real worker is unaffected and still answers
    hub.send(1, Task(pow, (3, 3)), task_id=2)
    rec.wait_for(lambda: rec.replies)
    assert rec.replies == [(1, 2, Result(27))]
    hub.send(1, Shutdown())
    process.wait(timeout=10)


def test_worker_listens_on_no_port_and_its_key_is_not_on_the_command_line(hub_and_recorder) -> None:
    hub, rec = hub_and_recorder
    process = start_worker(hub, 1)
    rec.wait_for(lambda: 1 in rec.hellos)
    worker = psutil.Process(process.pid)
    assert all(c.status != psutil.CONN_LISTEN for c in worker.net_connections(kind="inet"))
    assert hub.key.hex() not in " ".join(worker.cmdline())
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30).stdout
    assert hub.key.hex() not in ps
    hub.send(1, Shutdown())
    process.wait(timeout=10)


def test_hub_binds_loopback_by_default() -> None:
    hub = Hub(Recorder())
    try:
        assert hub.address.startswith("tcp://127.0.0.1:")
    finally:
        hub.close()


def test_worker_without_executor_exits_by_itself() -> None:
    with zmq.Context() as context, context.socket(zmq.ROUTER) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    key_files = KeyFiles(os.urandom(32))
    env = {**os.environ, **key_files.environment()}
    argv = [sys.executable, "-m", "xl_comm.worker", "--address", f"tcp://127.0.0.1:{port}", "--worker-id", "1"]
    started = time.monotonic()
    try:
        result = subprocess.run([*argv, "--connect-timeout", "1"], env=env, capture_output=True, timeout=30)
    finally:
        key_files.close()
    assert result.returncode == EXIT_ORPHANED
    assert b"did not accept the connection" in result.stderr
    assert time.monotonic() - started < 10


_EXECUTOR_SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from xl_comm.hub import Hub
    from xl_comm.messages import Task

    class Handler:
        def on_hello(self, worker_id, hello):
            if worker_id == 1:
                hub.send(1, Task(time.sleep, (600,)), task_id=1)   # busy in user code
            print(hello.pid, flush=True)                             # worker 2 stays idle
        def on_reply(self, *args): pass
        def on_exit(self, worker_id): pass

    hub = Hub(Handler())
    for worker_id in (1, 2):
        hub.expect(worker_id, None)
        subprocess.Popen([sys.executable, "-m", "xl_comm.worker", *hub.worker_args(worker_id)],
                         env={**os.environ, **hub.worker_env()}, start_new_session=True)
    time.sleep(600)
    """
)


def test_killed_executor_leaves_no_worker_alive(tmp_path: Path) -> None:
    script = tmp_path / "executor.py"
    script.write_text(_EXECUTOR_SCRIPT)
    executor = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert executor.stdout is not None
        ready, _, _ = select.select([executor.stdout], [], [], 60)
        assert ready, "the executor script did not start its workers"
        pids = [int(executor.stdout.readline()) for _ in range(2)]
        time.sleep(0.3)  # worker 1 is now inside time.sleep(600)
        executor.kill()
        executor.wait(timeout=10)
        deadline = time.monotonic() + 5
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in pids if _running(pid)]
            time.sleep(0.1)
        assert not alive, f"workers {alive} outlived their executor by 5 s"
    finally:
        executor.kill()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

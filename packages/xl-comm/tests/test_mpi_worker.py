"""The --mpi worker on real MPI ranks (mpiexec from the venv's MPI, mpi4py), against a real hub."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time

import pytest
from comm_helpers import Recorder
from hypothesis import given
from hypothesis import strategies as st
from mpi_tasks import (
    kill_rank_1,
    preset,
    raise_on_rank_1,
    raise_on_rank_1_then_allreduce,
    raise_on_rank_1_then_barrier,
    rank_and_size,
    sum_of_ranks,
)
from xl_comm.hub import Hub
from xl_comm.messages import Failure, Init, Result, Shutdown, Task
from xl_comm.team import PEER_FAILURE_GRACE_SECONDS, combine
from xl_serial import RemoteError


def _mpiexec() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpiexec and mpi4py (pip install mpi4py mpich)",
)


def _failure(rank: int) -> Failure:
    return Failure(RemoteError(ValueError(f"r{rank}"), "tb", f"rank {rank} of n"))


@given(st.integers(1, 8), st.data())
def test_combine_is_the_rank_ordered_list_or_the_lowest_failure(size: int, data: st.DataObject) -> None:
    failing = data.draw(st.sets(st.integers(0, size - 1)))
    missing = data.draw(st.sets(st.integers(0, size - 1))) if failing else set()
    outcomes = {
        rank: _failure(rank) if rank in failing else Result(rank * 10) for rank in range(size) if rank not in missing
    }
    answer = combine(outcomes, size)
    answered_failures = sorted(failing - missing)
    if not failing:
        assert answer == Result([rank * 10 for rank in range(size)])
    elif answered_failures:
        assert isinstance(answer, Failure)
        assert str(answer.error.exception) == f"r{answered_failures[0]}"
        assert answer.error.origin.startswith(f"rank {answered_failures[0]} of n")
        if missing:
            assert "did not answer" in answer.error.origin
    else:
        assert isinstance(answer, Failure)


@pytest.fixture
def team():
    """Start ``--mpi`` workers under mpiexec; yields (hub, recorder, start(worker_id, ranks, *extra))."""
    recorder = Recorder()
    hub = Hub(recorder)
    processes: list[subprocess.Popen[bytes]] = []
    here = os.path.dirname(os.path.abspath(__file__))

    def start(worker_id: int, ranks: int, *extra: str) -> subprocess.Popen[bytes]:
        assert MPIEXEC is not None
        argv = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "xl_comm.worker", "--mpi"]
        process = subprocess.Popen(
            [*argv, *hub.worker_args(worker_id), *extra],
            env={**os.environ, **hub.worker_env(), "PYTHONPATH": here},
            start_new_session=True,
        )
        processes.append(process)
        hub.expect(worker_id, os.pidfd_open(process.pid))
        return process

    yield hub, recorder, start
    hub.close()
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait(timeout=10)


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_every_rank_runs_the_call_and_the_values_come_back_in_rank_order(team, ranks: int) -> None:
    hub, rec, start = team
    process = start(1, ranks)
    rec.wait_for(lambda: 1 in rec.hellos)
    hub.send(1, Task(rank_and_size, (3,)), task_id=7)
    rec.wait_for(lambda: rec.replies)
    assert rec.replies == [(1, 7, Result([(3, ranks, rank) for rank in range(ranks)]))]
    hub.send(1, Shutdown())
    assert process.wait(timeout=30) == 0


@needs_mpi
def test_init_function_runs_on_every_rank(team) -> None:
    hub, rec, start = team
    process = start(1, 2, "--worker-index", "5")
    rec.wait_for(lambda: 1 in rec.hellos)
    hub.send(1, Init(lambda: {"k": 9}))
    hub.send(1, Task(preset), task_id=1)
    rec.wait_for(lambda: rec.replies)
    assert rec.replies[0][2] == Result([(0, 5, 9), (1, 5, 9)])
    hub.send(1, Shutdown())
    assert process.wait(timeout=30) == 0


@needs_mpi
def test_an_exception_on_one_rank_names_it_and_the_worker_stays_usable(team) -> None:
    hub, rec, start = team
    process = start(1, 2)
    rec.wait_for(lambda: 1 in rec.hellos)
    hub.send(1, Task(raise_on_rank_1), task_id=1)
    rec.wait_for(lambda: rec.replies)
    _, task_id, reply = rec.replies[0]
    assert task_id == 1 and isinstance(reply, Failure)
    error = reply.error.rebuild()
    assert isinstance(error, ValueError) and str(error) == "rank 1 refuses"
    assert "rank 1 of 2 of worker 1 (pid" in str(error.__cause__)
    assert os.uname().nodename in str(error.__cause__)
    hub.send(1, Task(rank_and_size, (4,)), task_id=2)
    rec.wait_for(lambda: len(rec.replies) == 2)
    assert rec.replies[1] == (1, 2, Result([(4, 2, 0), (4, 2, 1)]))
    hub.send(1, Task(sum_of_ranks), task_id=3)  # rank 0 holds the GIL in allreduce until rank 1 has the task
    rec.wait_for(lambda: len(rec.replies) == 3)
    assert rec.replies[2] == (1, 3, Result([1, 1]))
    hub.send(1, Shutdown())
    assert process.wait(timeout=30) == 0


@needs_mpi
def test_ranks_stuck_after_a_failure_end_the_job_with_the_error_not_a_hang(team) -> None:
    hub, rec, start = team
    process = start(1, 2)
    rec.wait_for(lambda: 1 in rec.hellos)
    sent = time.monotonic()
    hub.send(1, Task(raise_on_rank_1_then_barrier), task_id=1)
    rec.wait_for(lambda: rec.replies and rec.exits)
    reply = rec.replies[0][2]
    assert isinstance(reply, Failure) and str(reply.error.exception) == "rank 1 left the others waiting"
    assert "rank 0 did not answer" in reply.error.origin
    assert time.monotonic() - sent < PEER_FAILURE_GRACE_SECONDS + 10
    assert process.wait(timeout=30) != 0


@needs_mpi
def test_a_killed_rank_ends_the_worker_promptly(team) -> None:
    hub, rec, start = team
    process = start(1, 2)
    rec.wait_for(lambda: 1 in rec.hellos)
    sent = time.monotonic()
    hub.send(1, Task(kill_rank_1), task_id=1)
    rec.wait_for(lambda: rec.exits, timeout=30)
    assert time.monotonic() - sent < 10
    assert not rec.replies
    assert process.wait(timeout=10) != 0


@needs_mpi
def test_a_rank_stuck_holding_the_gil_after_a_failure_ends_the_job_not_a_hang(team) -> None:
    from xl_comm.mpi_worker import FOLLOWER_PATIENCE_SECONDS

    hub, rec, start = team
    process = start(1, 2)
    rec.wait_for(lambda: 1 in rec.hellos)
    sent = time.monotonic()
    hub.send(1, Task(raise_on_rank_1_then_allreduce), task_id=1)
    rec.wait_for(lambda: rec.exits, timeout=FOLLOWER_PATIENCE_SECONDS + 30)
    assert time.monotonic() - sent < FOLLOWER_PATIENCE_SECONDS + 10
    assert process.wait(timeout=10) != 0

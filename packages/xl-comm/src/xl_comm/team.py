"""Several MPI ranks as one worker (``python -m xl_comm.worker ... --mpi`` under mpiexec or srun).

Rank 0, the lead, is the worker the executor sees. At start-up the ranks use MPI once, to learn the lead's
address; after that the lead relays every message to the other ranks (the followers) over zmq, authenticated with
the executor's key like everything else, and collects their answers. Followers that wait for work sit in a zmq
receive, which sleeps in the kernel: waiting in ``MPI_Bcast`` would spin a core per rank for as long as the
worker lives.

A call's value is the list of every rank's value, in rank order. When a rank raises, the call fails with that
rank's exception, and the traceback names the rank and its host. A rank that raised may leave the others stuck in
a collective call that it never joined; once any rank has failed, the rest get PEER_FAILURE_GRACE_SECONDS to
answer, after which the lead reports the failure and ends the MPI job (the executor then starts a new worker).
When the lead itself is stuck in a call that holds the GIL (mpi4py's pickle-based collectives do), its watch
cannot run; the rank that raised then ends the job (see xl_comm.mpi_worker.TeamFollower).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zmq
from xl_serial import Frame, RemoteError

from xl_comm.framing import BodyError, Header, ProtocolError, open_body, open_header, pack_body, seal
from xl_comm.messages import Failure, Hello, Kind, Message, Result, Settled, Shutdown, Task

#: After one rank failed, how long the other ranks may take to answer before the MPI job is ended.
PEER_FAILURE_GRACE_SECONDS = 2.0

#: Exit status of a lead that ended its MPI job after a rank failed and others did not answer in time.
EXIT_TEAM_ABORTED = 76


def rank_origin(rank: int, size: int, worker_id: int) -> str:
    """How a rank is named in tracebacks, e.g. "rank 1 of 4 of worker 3 (pid 123 on node7)"."""
    return f"rank {rank} of {size} of worker {worker_id} (pid {os.getpid()} on {os.uname().nodename})"


def combine(outcomes: Mapping[int, Result | Failure], size: int) -> Result | Failure:
    """One answer for the executor from the ranks' answers (pure).

    All ranks answered with values: the list of values in rank order, and the longest rank's runtime (the call
    lasts until its slowest rank returns). Otherwise the lowest failing rank's exception, with every failing rank
    and every rank that never answered named in its origin.
    """
    failed = sorted(rank for rank, outcome in outcomes.items() if isinstance(outcome, Failure))
    missing = [rank for rank in range(size) if rank not in outcomes]
    if not failed and not missing:
        results = [outcome for _, outcome in sorted(outcomes.items()) if isinstance(outcome, Result)]
        return Result([result.value for result in results], max((result.runtime for result in results), default=0.0))
    notes = []
    if len(failed) > 1:
        notes.append(f"ranks {_ranks(failed)} of {size} raised")
    if missing:
        notes.append(
            f"rank{'s' if len(missing) > 1 else ''} {_ranks(missing)} did not answer within "
            f"{PEER_FAILURE_GRACE_SECONDS:g} s after the failure (waiting in a collective call for a rank that "
            "raised?), so the MPI job was ended"
        )
    if failed:
        first = outcomes[failed[0]]
        assert isinstance(first, Failure)
        error = first.error
    else:  # only reachable when rank answers vanished; kept total so the caller always gets an answer
        error = RemoteError(RuntimeError("no rank answered"), "", "the MPI lead")
    origin = error.origin + "".join(f"; {note}" for note in notes)
    return Failure(RemoteError(error.exception, error.traceback, origin))


def _ranks(ranks: Sequence[int]) -> str:
    return ", ".join(str(rank) for rank in ranks)


def follower_identity(rank: int) -> bytes:
    return b"rank%d" % rank


@dataclass
class _Call:
    """The answers gathered so far for the call in progress."""

    task_id: int
    outcomes: dict[int, Result | Failure]
    deadline: float | None = None
    answer: Result | Failure | None = None


class TeamLink:
    """The lead's side of the followers' connections: tasks go out on ``tasks`` (a ROUTER, used only by the
    lead's main thread, before it runs its own share: a user's MPI call may hold the GIL until every rank has
    joined it); answers come back on ``answers`` (a PULL, owned by the link's thread, so they are seen while
    the main thread is still inside the user's function: that is how a stuck call is noticed)."""

    def __init__(
        self,
        tasks: zmq.Socket[Any],
        answers: zmq.Socket[Any],
        key: bytes,
        size: int,
        abort: Callable[[int, Failure], None],
    ) -> None:
        self._tasks = tasks
        self._sock = answers
        self._key = key
        self._size = size
        self._abort = abort
        self._sent = 0
        self._stop_r, self._stop_w = os.pipe()
        self._call: _Call | None = None
        self._answered = threading.Condition()
        self._hellos: set[int] = set()
        self._thread = threading.Thread(target=self._serve, name="xl-comm-team", daemon=True)
        self._thread.start()

    # -- lead's main thread -----------------------------------------------------------------------------------

    def wait_for_followers(self, timeout: float) -> None:
        """Block until every follower said hello; RuntimeError naming the missing ranks after ``timeout``."""
        with self._answered:
            done = self._answered.wait_for(lambda: len(self._hellos) == self._size - 1, timeout)
            if not done:
                missing = sorted(set(range(1, self._size)) - self._hellos)
                raise RuntimeError(f"MPI ranks {_ranks(missing)} did not connect to rank 0 within {timeout:g} s")

    def broadcast(self, message: Message, task_id: int = 0) -> None:
        """Send ``message`` to every follower."""
        self._send_all(message.kind, task_id, pack_body(message))

    def call(self, task_id: int, task: Task, local: Callable[[], Result | Failure]) -> Result | Failure:
        """Run ``task`` on every rank: the followers get it first, then ``local`` runs it here."""
        with self._answered:
            self._call = _Call(task_id, {})
        self._send_all(Kind.TASK, task_id, pack_body(task))
        outcome = local()
        self._record(0, task_id, outcome)
        with self._answered:
            self._answered.wait_for(lambda: self._call is not None and self._call.answer is not None)
            assert self._call is not None and self._call.answer is not None
            answer, self._call = self._call.answer, None
        if isinstance(answer, Failure):  # followers that failed wait for this before they give up on rank 0
            self.broadcast(Settled())
        return answer

    def close(self) -> None:
        """Tell the followers to stop, then stop the link's thread."""
        self.broadcast(Shutdown())
        self.stop()

    def stop(self) -> None:
        """Stop the link's thread (before its sockets are closed under it), telling the followers nothing."""
        os.write(self._stop_w, b"S")
        self._thread.join()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _send_all(self, kind: Kind, task_id: int, body: Sequence[Frame]) -> None:
        for rank in range(1, self._size):
            self._sent += 1
            frames = seal(self._key, Header(kind, rank, self._sent, task_id), body)
            self._tasks.send_multipart([follower_identity(rank), *frames], copy=False)

    # -- the link's thread ------------------------------------------------------------------------------------

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._stop_r, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(self._timeout_ms()))
            if self._stop_r in ready and b"S" in os.read(self._stop_r, 4096):
                return
            while self._sock.poll(0, zmq.POLLIN):
                self._receive(self._sock.recv_multipart(copy=False))
            self._check_deadline()

    def _timeout_ms(self) -> int | None:
        call = self._call
        if call is None or call.deadline is None or call.answer is not None:
            return None
        return max(0, int((call.deadline - time.monotonic()) * 1000) + 1)

    def _receive(self, frames: Sequence[Any]) -> None:
        try:
            header = open_header(self._key, frames)
            message = open_body(header, frames)
        except (ProtocolError, BodyError) as problem:
            print(f"xl_comm.team: dropped a message from a rank: {problem}", flush=True)
            return
        if not 0 < header.worker_id < self._size:
            return
        if isinstance(message, Hello):
            with self._answered:
                self._hellos.add(header.worker_id)
                self._answered.notify_all()
        elif isinstance(message, Result | Failure):
            self._record(header.worker_id, header.task_id, message)

    def _record(self, rank: int, task_id: int, outcome: Result | Failure) -> None:
        with self._answered:
            call = self._call
            if call is None or call.task_id != task_id or call.answer is not None:
                return
            call.outcomes[rank] = outcome
            if len(call.outcomes) == self._size:
                call.answer = combine(call.outcomes, self._size)
                self._answered.notify_all()
            elif isinstance(outcome, Failure) and call.deadline is None:
                call.deadline = time.monotonic() + PEER_FAILURE_GRACE_SECONDS
                if threading.current_thread() is not self._thread:
                    os.write(self._stop_w, b"w")  # the link's thread sleeps without a timeout: wake it to keep time

    def _check_deadline(self) -> None:
        with self._answered:
            call = self._call
            if call is None or call.deadline is None or call.answer is not None or time.monotonic() < call.deadline:
                return
            failure = combine(call.outcomes, self._size)
        assert isinstance(failure, Failure)
        self._abort(call.task_id, failure)

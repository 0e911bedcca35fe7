"""The ``--mpi`` worker: every rank of an mpiexec or srun launch runs this; rank 0 leads (see xl_comm.team)."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import Any

import zmq

from xl_comm.framing import pack_body
from xl_comm.keys import KEY_FILE_ENV, load_key
from xl_comm.messages import Failure, Hello, Init, Kind, Result, Task
from xl_comm.team import EXIT_TEAM_ABORTED, PEER_FAILURE_GRACE_SECONDS, TeamLink, follower_identity, rank_origin
from xl_comm.worker_loop import Departure, ExecutorGuard, WorkerLoop, close, connect, fast_exit

#: Status of a rank that cannot import mpi4py (EX_CONFIG).
EXIT_NO_MPI4PY = 78

#: How long a rank whose call raised waits for rank 0 to settle the call before it ends the MPI job; longer
#: than rank 0's own grace, so rank 0 answers with the error whenever it can.
FOLLOWER_PATIENCE_SECONDS = 2 * PEER_FAILURE_GRACE_SECONDS + 2


class TeamLead(WorkerLoop):
    """Rank 0: the executor's worker, which runs every task on all ranks through its TeamLink."""

    link: TeamLink
    #: what abort() must close so the answer leaves before the process does
    ending: tuple[zmq.Context[Any], tuple[zmq.Socket[Any], ...], ExecutorGuard]

    def _init(self, message: Init) -> None:
        self.link.broadcast(message)
        super()._init(message)

    def _outcome(self, task: Task) -> Result | Failure:
        return self.link.call(self._current, task, lambda: super(TeamLead, self)._outcome(task))

    def _run(self, task: Task, task_id: int) -> tuple[Kind, int, Any]:
        self._current = task_id
        return super()._run(task, task_id)

    def abort(self, task_id: int, failure: Failure) -> None:
        """Answer the stuck call with ``failure``, then end the MPI job (the launcher stops the other ranks)."""
        self._send_all([(Kind.FAILURE, task_id, pack_body(Failure(failure.error, ends_worker=True)))])
        context, team, guard = self.ending
        for team_sock in team:
            team_sock.close(linger=0)
        close(context, self._sock, guard)  # returns once the answer has left (lingers up to 5 s)
        os._exit(EXIT_TEAM_ABORTED)

    def leave(self, comm: Any, departing: Departure) -> None:
        """User code on this rank raised SystemExit or KeyboardInterrupt: send the answers already made, then end
        the whole MPI job with the departure's status (the other ranks may be inside the same call, or waiting in a
        collective call for this rank, so nothing short of MPI_Abort ends them reliably)."""
        self.link.stop()
        context, team, guard = self.ending
        for team_sock in team:
            team_sock.close(linger=0)
        close(context, self._sock, guard)
        _abort_job(comm, self.origin, departing)


def run_rank(args: SimpleNamespace) -> int:
    try:
        from mpi4py import MPI
    except ImportError as problem:
        print(
            f"xl_comm.worker --mpi needs mpi4py ({problem}); install it with: pip install mpi4py "
            "(and an MPI, e.g. pip install mpich)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_NO_MPI4PY
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    host = os.uname().nodename
    one_host = len(set(comm.allgather(host))) == 1
    try:
        key = _share_key(comm, rank)
    except BaseException:
        MPI.Finalize()
        raise
    if key is None:
        print(f"{rank_origin(rank, size, args.worker_id)}: rank 0 could not read the key", file=sys.stderr, flush=True)
        MPI.Finalize()
        return 1
    context = zmq.Context(io_threads=1)
    try:
        if rank == 0:
            _lead(args, key, context, comm, size, one_host)
        else:
            _follow(args, key, context, comm, rank, size)
    finally:
        if not MPI.Is_finalized():
            MPI.Finalize()  # every rank calls it, or the launcher reports an abnormal end
    if args.one_shot:
        fast_exit()
    return 0


def _share_key(comm: Any, rank: int) -> bytes | None:
    """Rank 0 reads the key file (which deletes it) and hands the key to the other ranks, which may run on hosts
    that do not see that file; they get None when rank 0 could not read it (rank 0 raises)."""
    if rank != 0:
        os.environ.pop(KEY_FILE_ENV, None)
        shared: bytes | None = comm.bcast(None, root=0)
        return shared
    try:
        key = load_key()
    except BaseException:
        comm.bcast(None, root=0)
        raise
    comm.bcast(key, root=0)
    return key


def _lead(args: SimpleNamespace, key: bytes, context: zmq.Context[Any], comm: Any, size: int, one_host: bool) -> None:
    tasks, answers = context.socket(zmq.ROUTER), context.socket(zmq.PULL)
    # Followers on other hosts connect over the network; the key authenticates them like the lead itself.
    host = "127.0.0.1" if one_host else os.uname().nodename
    addresses = []
    for team_sock in (tasks, answers):
        team_sock.setsockopt(zmq.LINGER, 1_000)
        team_sock.bind("tcp://127.0.0.1:0" if one_host else "tcp://*:0")
        port = team_sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1]
        addresses.append(f"tcp://{host}:{port}")
    comm.bcast(addresses, root=0)
    sock, guard = connect(context, args.address, args.connect_timeout)
    origin = rank_origin(0, size, args.worker_id)
    lead = TeamLead(sock, key, args.worker_id, args.worker_index, origin=origin, one_shot=args.one_shot)
    lead.link = TeamLink(tasks, answers, key, size, lead.abort)
    lead.ending = (context, (tasks, answers), guard)
    try:
        lead.link.wait_for_followers(args.connect_timeout)
        lead.send(Hello(pid=os.getpid(), host=os.uname().nodename))
        departing = lead.serve(one_shot=args.one_shot)
        if departing is not None:
            lead.leave(comm, departing)
    finally:
        lead.link.close()
        comm.Barrier()  # every follower has left its loop: closing the team sockets now alarms nobody
        tasks.close()
        answers.close()
    close(context, sock, guard)


class TeamFollower(WorkerLoop):
    """Ranks 1..N-1: run what rank 0 relays. A rank whose call raised gives rank 0 FOLLOWER_PATIENCE_SECONDS to
    settle the call; rank 0 may be stuck in a collective call that holds the GIL, where its own watch cannot
    run, so then this rank ends the MPI job (its traceback is on stderr) and the executor reports the death."""

    comm: Any

    def _answered(self, kind: Kind) -> None:
        if kind != Kind.FAILURE or self._sock.poll(int(FOLLOWER_PATIENCE_SECONDS * 1000), zmq.POLLIN):
            return
        print(
            f"{self._origin}: the call raised here and rank 0 has not settled it after {FOLLOWER_PATIENCE_SECONDS:g} "
            "s (stuck in a collective call?); ending the MPI job",
            file=sys.stderr,
            flush=True,
        )
        self.comm.Abort(EXIT_TEAM_ABORTED)


def _follow(args: SimpleNamespace, key: bytes, context: zmq.Context[Any], comm: Any, rank: int, size: int) -> None:
    tasks_address, answers_address = comm.bcast(None, root=0)
    sock, guard = connect(context, tasks_address, args.connect_timeout, identity=follower_identity(rank))
    out = context.socket(zmq.PUSH)
    out.setsockopt(zmq.LINGER, 5_000)
    out.connect(answers_address)
    origin = rank_origin(rank, size, args.worker_id)
    loop = TeamFollower(sock, key, rank, args.worker_index, origin=origin, out=out, one_shot=args.one_shot)
    loop.comm = comm
    loop.send(Hello(pid=os.getpid(), host=os.uname().nodename))
    departing = loop.serve(one_shot=False)
    if departing is not None:
        _abort_job(comm, loop.origin, departing)
    out.close()
    close(context, sock, guard)
    comm.Barrier()


def _abort_job(comm: Any, origin: str, departing: Departure) -> None:
    """End every rank of this MPI job with the departure's status (the executor then sees its worker die)."""
    print(f"{origin}: {departing.note}; ending the MPI job with status {departing.status}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    comm.Abort(departing.status)
    os._exit(departing.status)  # not reached: MPI_Abort does not return

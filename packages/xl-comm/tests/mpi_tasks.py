"""Functions the MPI worker tests send by reference (the ranks import this module)."""

from __future__ import annotations

import os
import signal


def rank_and_size(i: int) -> tuple[int, int, int]:
    from mpi4py import MPI

    return i, MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()


def raise_on_rank_1() -> int:
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    if rank == 1:
        raise ValueError("rank 1 refuses")
    return rank


def raise_on_rank_1_then_barrier() -> int:
    """Rank 1 raises; rank 0 then waits forever in a collective call rank 1 never joins."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == 1:
        raise ValueError("rank 1 left the others waiting")
    comm.Barrier()
    return comm.Get_rank()


def kill_rank_1() -> int:
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    MPI.COMM_WORLD.Barrier()
    return 0


def preset(executorlib_worker_id: int = -1, k: int = 0) -> tuple[int, int, int]:
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), executorlib_worker_id, k


def raise_on_rank_1_then_allreduce() -> int:
    """Like the barrier case, but rank 0 waits in a pickle-based collective, which holds the GIL while it waits."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == 1:
        raise ValueError("rank 1 left rank 0 in allreduce")
    return int(comm.allreduce(comm.Get_rank()))


def sum_of_ranks() -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return int(comm.allreduce(comm.Get_rank()))

"""The functions the benchmarks run. They live in their own module so that every side (executorlib, the echo
floor, ProcessPoolExecutor) pickles them by reference and imports them the same way."""

from __future__ import annotations

import time
from typing import TypeVar

T = TypeVar("T")


def echo(x: T) -> T:
    """The trivial task: return the argument."""
    return x


def sleep(seconds: float) -> float:
    """An idle task: sleep, return how long."""
    time.sleep(seconds)
    return seconds


def inc(x: int) -> int:
    """One link of a dependency chain: add one."""
    return x + 1


def sum_all(values: list[int]) -> int:
    """The reducer of a fan-out: the sum of all results."""
    return sum(values)


def mpi_rank(i: int) -> int:
    """This call's MPI rank (imports mpi4py in the task, as user code does)."""
    from mpi4py import MPI

    return int(MPI.COMM_WORLD.Get_rank()) + 0 * i

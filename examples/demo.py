"""A small real workflow: fan-out on fresh processes, a worker pool with preloaded state, error handling, a call on
two MPI ranks, dependencies, and a cache that makes the second run of the script instant."""

from __future__ import annotations

import math
import os
import time

from executorlib import SingleNodeExecutor, get_cache_data

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".demo-cache")


def load() -> dict[str, float]:
    """Runs once per pool worker; its entries become keyword arguments of the tasks."""
    return {"scale": 2.0}


def analyse(i: int, scale: float = 1.0, executorlib_worker_id: int = -1) -> tuple[int, float, int]:
    time.sleep(0.01)  # a little work, so both pool workers get a share
    return i, scale * math.sqrt(i), executorlib_worker_id


def where(x: int) -> str:
    return f"task {x} ran in pid {os.getpid()} with OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"


def fragile(x: int) -> float:
    return 1 / x


def ranks(i: int) -> tuple[int, int, int]:
    from mpi4py import MPI

    return i, MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()


def slow_square(x: int) -> int:
    time.sleep(1.0)  # expensive: cached, so a second run of this script skips it
    return x * x


def main() -> None:
    started = time.perf_counter()
    with SingleNodeExecutor() as exe:  # one fresh Python process per call
        print("sums:", [f.result() for f in [exe.submit(sum, [i, i]) for i in range(1, 5)]])
        print(exe.submit(where, 1, resource_dict={"threads_per_core": 2}).result())
    with SingleNodeExecutor(max_workers=2, block_allocation=True, init_function=load) as exe:
        results = list(exe.map(analyse, range(100)))
        print("pool:", results[:3], "...", f"{len(results)} results from workers", sorted({r[2] for r in results}))
        try:
            exe.submit(fragile, 0).result()
        except ZeroDivisionError as error:
            print("remote error kept its type:", repr(error))
            print("remote traceback attached:", "fragile" in str(error.__cause__))
    with SingleNodeExecutor(cache_directory=CACHE) as exe:
        print("two MPI ranks:", exe.submit(ranks, 3, resource_dict={"cores": 2}).result())
        begun = time.perf_counter()
        squares = [exe.submit(slow_square, i) for i in range(2)]
        total = exe.submit(sum, squares)  # waits for both squares, receives their values
        value, seconds = total.result(), time.perf_counter() - begun
        print(f"sum of squares {value} in {seconds:.2f} s (a second run of this script reads the cache)")
    print("cache entries:", sorted(entry["function"].__name__ for entry in get_cache_data(CACHE)))
    print(f"demo finished in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()

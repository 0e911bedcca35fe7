"""A small real workflow: fan-out on fresh processes, a worker pool with preloaded state, and error handling."""

from __future__ import annotations

import math
import os
import time

from executorlib import SingleNodeExecutor


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
    print(f"demo finished in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()

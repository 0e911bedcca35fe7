"""How many workers, how many cores: pure functions, property-tested."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPUs this process may run on (the affinity mask, which respects cgroups/taskset and batch allocations)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pool_size(max_workers: int | None, max_cores: int | None, cpus_per_worker: int, cpu_count: int) -> int:
    """Workers of a block-allocation pool.

    An explicit ``max_workers`` wins (and must fit into an explicit ``max_cores``); otherwise as many workers as
    the core budget holds, at least one.
    """
    if max_workers is not None:
        if max_cores is not None and max_workers * cpus_per_worker > max_cores:
            raise ValueError(
                f"max_workers={max_workers} workers of {cpus_per_worker} core(s) each need "
                f"{max_workers * cpus_per_worker} cores, more than max_cores={max_cores}; "
                "lower max_workers or the cores per worker, or raise max_cores"
            )
        return max_workers
    budget = max_cores if max_cores is not None else cpu_count
    if cpus_per_worker > budget:
        raise ValueError(
            f"one worker needs {cpus_per_worker} cores (cores x threads_per_core) but only {budget} are available "
            "(max_cores or the CPUs of this machine); lower the resources per worker or raise max_cores"
        )
    return max(1, budget // cpus_per_worker)


def core_budget(max_workers: int | None, max_cores: int | None, cpu_count: int) -> int | None:
    """Cores that one-process-per-task mode may occupy at once; None means only ``max_workers`` bounds it.

    ``max_cores`` wins; an explicit ``max_workers`` alone bounds the number of tasks (executorlib 1.x); with
    neither, the CPU count bounds it, so an unbounded submission loop never starts hundreds of processes.
    """
    if max_cores is not None:
        return max_cores
    if max_workers is not None:
        return None
    return cpu_count


def fits(used: int, running: int, request: int, budget: int | None, max_tasks: int | None) -> bool:
    """Whether a task occupying ``request`` cores may start now."""
    if max_tasks is not None and running >= max_tasks:
        return False
    if budget is None:
        return True
    # A task larger than the whole budget is rejected at submit; here an idle executor always admits one task.
    return used + request <= budget or running == 0

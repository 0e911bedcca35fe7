"""The four workloads. Each returns table rows (and adds diagnostic lines to ``notes``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from executorlib import SingleNodeExecutor

from benchmarks.floor import EchoClient, python_start
from benchmarks.report import Row, Target
from benchmarks.tasks import echo, sleep


@dataclass(frozen=True)
class Sizes:
    latency_calls: int
    latency_warmup: int
    throughput_tasks: int
    throughput_repeats: int
    process_calls: int
    idle_seconds: float
    idle_repeats: int


FULL = Sizes(
    latency_calls=2000,
    latency_warmup=200,
    throughput_tasks=5000,
    throughput_repeats=5,
    process_calls=30,
    idle_seconds=3.0,
    idle_repeats=3,
)
QUICK = Sizes(
    latency_calls=300,
    latency_warmup=50,
    throughput_tasks=1000,
    throughput_repeats=1,
    process_calls=5,
    idle_seconds=3.0,
    idle_repeats=1,
)


def per_call_seconds(call: Callable[[int], Any], calls: int, warmup: int = 0) -> list[float]:
    """Wall time of each of ``calls`` sequential ``call(i)`` after ``warmup`` untimed ones."""
    for i in range(warmup):
        call(i)
    times = []
    for i in range(calls):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return times


def interleaved(
    contenders: dict[str, Callable[[int], Any]], calls: int, warmup: int, rounds: int
) -> dict[str, list[float]]:
    """``per_call_seconds`` for each contender, taken in ``rounds`` alternating slices so that a change in the
    machine's load (it is shared) hits all contenders alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for call in contenders.values():
        per_call_seconds(call, 0, warmup)
    for r in range(rounds):
        share = calls // rounds + (1 if r < calls % rounds else 0)
        for name, call in contenders.items():
            times[name].extend(per_call_seconds(call, share))
    return times


def latency(sizes: Sizes, notes: list[str]) -> list[Row]:
    n = sizes.latency_calls
    with (
        SingleNodeExecutor(max_workers=1, block_allocation=True) as exe,
        EchoClient() as client,
        ProcessPoolExecutor(max_workers=1) as ppe,
    ):
        times = interleaved(
            {
                "executorlib": lambda i: exe.submit(echo, i).result(),
                "floor": lambda i: client.call(echo, i),
                "PPE": lambda i: ppe.submit(echo, i).result(),
            },
            n,
            sizes.latency_warmup,
            rounds=10,
        )
    us = 1e6
    for name, values in times.items():
        q = statistics.quantiles(values, n=100)
        notes.append(f"latency {name}: p10 {q[9] * us:.0f} us, p90 {q[89] * us:.0f} us, p99 {q[98] * us:.0f} us")
    targets = [Target("floor", "<=", 1.5), Target("ppe", "<=", 1.0)]
    xl, floor, pool = times["executorlib"], times["floor"], times["PPE"]
    return [
        Row(
            f"1 latency, block, 1 worker, median of {n}",
            "us/call",
            statistics.median(xl) * us,
            statistics.median(floor) * us,
            statistics.median(pool) * us,
            targets,
        ),
        Row(
            f"1 latency, block, 1 worker, mean of {n}",
            "us/call",
            statistics.mean(xl) * us,
            statistics.mean(floor) * us,
            statistics.mean(pool) * us,
            targets,
        ),
    ]


def _burst(exe: Executor, tasks: int) -> tuple[float, float]:
    """Submit ``tasks`` trivial calls at once, gather all results: (seconds submitting, seconds in total)."""
    start = time.perf_counter()
    futures = [exe.submit(echo, i) for i in range(tasks)]
    submitted = time.perf_counter()
    for future in futures:
        future.result()
    return submitted - start, time.perf_counter() - start


def throughput(sizes: Sizes, notes: list[str]) -> list[Row]:
    n = sizes.throughput_tasks
    with (
        SingleNodeExecutor(max_workers=2, block_allocation=True) as exe,
        ProcessPoolExecutor(max_workers=2) as ppe,
    ):
        pools: dict[str, Executor] = {"executorlib": exe, "PPE": ppe}
        for pool in pools.values():  # workers up and warm
            for future in [pool.submit(echo, i) for i in range(20)]:
                future.result()
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in pools}
        for _ in range(sizes.throughput_repeats):
            for name, pool in pools.items():
                runs[name].append(_burst(pool, n))
    rate = {}
    for name, bursts in runs.items():
        total = statistics.median(t for _, t in bursts)
        submit = statistics.median(s for s, _ in bursts)
        rate[name] = n / total
        notes.append(
            f"throughput {name}: {n} tasks in {total:.3f} s (median of {len(bursts)}), "
            f"of which {submit:.3f} s inside submit() ({submit / n * 1e6:.0f} us per submit)"
        )
    return [
        Row(
            f"2 throughput, block, 2 workers, {n} tasks",
            "tasks/s",
            rate["executorlib"],
            None,
            rate["PPE"],
            [Target("ppe", ">=", 1.2)],
        )
    ]


def process_per_task(sizes: Sizes, notes: list[str]) -> list[Row]:
    n = sizes.process_calls
    with SingleNodeExecutor(max_workers=1) as exe:
        times = interleaved(
            {"executorlib": lambda i: exe.submit(echo, i).result(), "floor": lambda i: python_start()},
            n,
            warmup=1,
            rounds=n,
        )
    # The stdlib's nearest equivalent, a fresh (spawned) process per task. Not interleaved: this pool starts the
    # next process as soon as the last one finished, so pauses between its calls would hide that cost.
    with ProcessPoolExecutor(max_workers=1, max_tasks_per_child=1) as ppe:
        times["PPE"] = per_call_seconds(lambda i: ppe.submit(echo, i).result(), n, warmup=1)
    xl, floor, pool = times["executorlib"], times["floor"], times["PPE"]
    ms = 1e3
    notes.append(
        f"process per task: executorlib min {min(xl) * ms:.1f} ms, floor min {min(floor) * ms:.1f} ms; "
        "PPE = ProcessPoolExecutor(1, max_tasks_per_child=1) (spawn), for comparison only"
    )
    return [
        Row(
            f"3 process per task, 1 at a time, mean of {n}",
            "ms/call",
            statistics.mean(xl) * ms,
            statistics.mean(floor) * ms,
            statistics.mean(pool) * ms,
            [Target("floor", "<=", 1.2)],
        )
    ]


def _idle_cpu(exe: Executor, seconds: float) -> tuple[float, float]:
    """CPU seconds of this process, and of its child processes, from submit of a ``sleep`` to its result."""
    exe.submit(echo, 0).result()  # the worker is up and has run something
    children = psutil.Process().children(recursive=True)
    kids_before = sum(_cpu(p) for p in children)
    before = time.process_time()
    exe.submit(sleep, seconds).result()
    own = time.process_time() - before
    kids = sum(_cpu(p) for p in children) - kids_before
    return own, kids


def _cpu(process: psutil.Process) -> float:
    """CPU seconds of all threads of ``process``: nanoseconds from Linux schedstat, else psutil's 10 ms ticks."""
    try:
        tasks = Path(f"/proc/{process.pid}/task").iterdir()
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except OSError:
        pass
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def _median_idle_cpu(exe: Executor, seconds: float, repeats: int) -> tuple[float, float]:
    runs = [_idle_cpu(exe, seconds) for _ in range(repeats)]
    return statistics.median(own for own, _ in runs), statistics.median(kids for _, kids in runs)


def idle_cpu(sizes: Sizes, notes: list[str]) -> list[Row]:
    s, k = sizes.idle_seconds, sizes.idle_repeats
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        xl_base = _median_idle_cpu(exe, 0, k)
        xl, xl_kids = _median_idle_cpu(exe, s, k)
    with ProcessPoolExecutor(max_workers=1) as ppe:
        pool_base = _median_idle_cpu(ppe, 0, k)
        pool, pool_kids = _median_idle_cpu(ppe, s, k)
    ms = 1e3
    notes.append(
        f"idle CPU baseline, the same with sleep(0) (cost of one submit + result, not idling): executorlib "
        f"{xl_base[0] * ms:.3f} + worker {xl_base[1] * ms:.3f} CPU-ms, PPE {pool_base[0] * ms:.3f} + worker "
        f"{pool_base[1] * ms:.3f} CPU-ms"
    )
    what = f"while a task sleeps {s:g} s, median of {k}"
    return [
        Row(f"4 idle CPU, this process, {what}", "CPU-ms", xl * ms, 0.0, pool * ms, [Target("abs", "<=", 1.0)]),
        Row(f"4 idle CPU, the worker process, {what}", "CPU-ms", xl_kids * ms, 0.0, pool_kids * ms),
    ]


WORKLOADS: list[tuple[str, Callable[[Sizes, list[str]], list[Row]]]] = [
    ("latency", latency),
    ("throughput", throughput),
    ("process per task", process_per_task),
    ("idle CPU", idle_cpu),
]

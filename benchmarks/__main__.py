"""``python -m benchmarks [--quick] [--json PATH] [--only TEXT]``: run the workloads, print the table, exit 0."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


# Task functions defined here on purpose: this module is what ``python -m benchmarks`` runs as ``__main__``, so
# they are what a user's script or notebook defines. cloudpickle ships them by value; ProcessPoolExecutor (fork)
# pickles them by name, since its workers inherit this ``__main__``.
def echo_in_main(x: T) -> T:
    """The trivial task, defined in ``__main__``."""
    return x


def inc_in_main(x: int) -> int:
    """Add one, defined in ``__main__``."""
    return x + 1


def machine_info() -> dict[str, Any]:
    import cloudpickle
    import zmq

    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "cloudpickle": cloudpickle.__version__,
        "commit": commit.stdout.strip() or "unknown",
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _give_up(seconds: float) -> None:
    """Print where every thread is, end every process this run started (pool workers that outlive us would keep
    the caller's output pipe open), and exit with status 1."""
    import psutil

    print(f"benchmarks: still running after {seconds:.0f} s; the threads are at:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(all_threads=True)
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()
    os._exit(1)


def _compile_sources() -> None:
    """Bring the workspace's bytecode up to date, as an installed package has it. With PYTHONDONTWRITEBYTECODE set
    (as on these machines) a source edited since the last compile is compiled again in every worker's start, which
    a user's installed executorlib never does."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for source in sorted((root / "packages").glob("*/src")):
        compileall.compile_dir(source, quiet=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts for a CI smoke run (< 60 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="run only the workloads whose name contains TEXT (or one of TEXT's comma-separated parts)",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="print every thread's stack and exit 1 if still running then"
    )
    args = parser.parse_args(argv)
    if args.timeout:  # a hang in CI should cost minutes and show where it is, not the whole time budget
        watchdog = threading.Timer(args.timeout, _give_up, args=(args.timeout,))
        watchdog.daemon = True
        watchdog.start()

    # Imported here so that a spawned child re-importing this module as __mp_main__ stays light.
    from benchmarks.report import table
    from benchmarks.workloads import FULL, QUICK, WORKLOADS, MainFunctions, remove_leftovers, use_main_functions

    use_main_functions(MainFunctions(echo=echo_in_main, inc=inc_in_main))

    sizes = QUICK if args.quick else FULL
    _compile_sources()
    info = machine_info()
    print(
        f"machine: {info['cpu_count']} CPUs ({info['cpus_usable']} usable), {info['implementation']} "
        f"{info['python']}, {info['platform']}, load average {info['load_average']}"
    )
    print(
        f"pyzmq {info['pyzmq']} (libzmq {info['libzmq']}), cloudpickle {info['cloudpickle']}, commit "
        f"{info['commit']}; mode: {'quick' if args.quick else 'full'}"
    )
    rows = []
    notes: list[str] = []
    started = time.perf_counter()
    try:
        for name, workload in WORKLOADS:
            if args.only and not any(part in name for part in args.only.split(",")):
                continue
            print(f"running {name} ...", file=sys.stderr, flush=True)
            # Each row starts from a collected heap: a row's cyclic garbage (e.g. 50,000 failed Futures, whose
            # tracebacks are cycles: 1.4 million objects) otherwise makes the next rows' collections slow; measured
            # on row 8 at 5000 entries: 498 us per warm hit after row 7, 360-390 us after a collection.
            gc.collect()
            rows.extend(workload(sizes, notes))
    finally:
        remove_leftovers()
    elapsed = time.perf_counter() - started
    print()
    print(table(rows))
    print()
    print("ratio = executorlib / column; for throughput higher is better, for everything else lower is better.")
    print(
        "floor: 1 = zmq REQ/REP + cloudpickle echo process, over the executor's transport (abstract unix socket); "
        "3 = python -c pass (a bare interpreter start);"
    )
    print("       4, 7 = nothing burns CPU while waiting; 5 = executorlib's own single-task latency, same run;")
    print("       14 = zmq REQ/REP echo of the same pickle-5 buffers, copy=False, no framing or MAC")
    print("            (the shared-memory floor, what executorlib's path on one host does, is in the notes).")
    print("PPE = concurrent.futures.ProcessPoolExecutor.")
    for note in notes:
        print(f"  {note}")
    load_after = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    print(f"total benchmark time: {elapsed:.1f} s; load average at the end {load_after} (the machine may be shared)")
    if args.json is not None:
        document = {
            "mode": "quick" if args.quick else "full",
            "machine": info,
            "seconds": elapsed,
            "load_average_at_end": load_after,
            "rows": [row.as_json() for row in rows],
            "notes": notes,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

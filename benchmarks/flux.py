"""The Flux rows: FluxJobExecutor per call and in a pool, FluxClusterExecutor per task, each against flux's own
cost. Runs inside the instance at ``FLUX_URI``, or starts ``flux start`` (one broker) for the run when flux is
installed; prints a note and no row where there is no flux."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.report import Row, Target
from benchmarks.tasks import echo, inc

#: Where scripts/flux-setup.sh installs flux for the tests (used when no flux is on PATH).
FLUX_PREFIX = Path("/opt/flux")


def _flux_command() -> str | None:
    found = shutil.which("flux")
    if found is not None:
        return found
    candidate = FLUX_PREFIX / "bin" / "flux"
    return str(candidate) if candidate.exists() else None


@contextlib.contextmanager
def flux_instance(flux: str) -> Iterator[None]:
    """``FLUX_URI`` of the instance this process runs in, or of a one-broker ``flux start`` for the block; the
    instance's initial program ends with this process, so a killed benchmark leaves none behind."""
    if os.environ.get("FLUX_URI"):
        yield
        return
    command = [flux, "start", "sh", "-c", f'echo "$FLUX_URI"; exec tail --pid={os.getpid()} -f /dev/null']
    # stderr dropped: the broker reports its initial program ending when the block stops the instance.
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    saved = {name: os.environ.get(name) for name in ("FLUX_URI", "PATH")}
    try:
        assert proc.stdout is not None
        uri = proc.stdout.readline().strip()  # flux start takes about a second
        if not uri:
            raise RuntimeError(f"flux start printed no FLUX_URI (exit status {proc.poll()})")
        os.environ["FLUX_URI"] = uri
        os.environ["PATH"] = f"{Path(flux).parent}{os.pathsep}{saved['PATH'] or ''}"
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


def _batch_floor(flux: str, directory: str, i: int) -> Any:
    """The least a file-mode task costs under flux: write its task file, ``flux batch`` a script that runs
    ``python -m xl_cache.worker`` on it, wait for the job's end, read the output (no executor)."""
    import xl_cache

    key = f"floor{i}"
    xl_cache.write_input(directory, key, echo, (i,), {})
    script = Path(directory, f"{key}.sh")
    script.write_text(f"#!/bin/sh\n{sys.executable} -m xl_cache.worker {Path(directory, f'{key}_i.h5')}\n")
    job = _run([flux, "batch", "--nslots=1", f"--output={directory}/{key}.out", str(script)]).strip()
    _run([flux, "job", "wait-event", job, "clean"])
    outcome = xl_cache.load_result(directory, key)
    assert outcome is not None
    return outcome.value


def flux_rows(sizes: Any, notes: list[str]) -> list[Row]:
    """FluxJobExecutor: a call with its own job vs ``flux run -n1 true``, and a call on a pool worker (latency);
    FluxClusterExecutor: a task at a time vs flux batch plus a bare file worker."""
    flux = _flux_command()
    if flux is None:
        notes.append("flux rows skipped: no flux on PATH or in /opt/flux (scripts/flux-setup.sh installs it)")
        return []
    try:
        import flux as _bindings  # noqa: F401
    except ImportError as missing:
        notes.append(f"flux rows skipped: the flux python bindings are not importable ({missing})")
        return []
    from executorlib import FluxClusterExecutor, FluxJobExecutor

    n = sizes.process_calls
    ms = 1e3
    with flux_instance(flux):
        from benchmarks.workloads import interleaved, per_call_seconds

        with FluxJobExecutor(max_workers=1) as exe:
            times = interleaved(
                {
                    "floor": lambda i: _run([flux, "run", "-n1", "true"]),
                    "call": lambda i: exe.submit(inc, i).result(timeout=60),
                },
                calls=n,
                warmup=1,
                rounds=2,
            )
        per_call, run_true = statistics.median(times["call"]), statistics.median(times["floor"])
        with FluxJobExecutor(max_workers=1, block_allocation=True) as exe:
            pool = per_call_seconds(lambda i: exe.submit(inc, i).result(timeout=60), 20 * n, warmup=20)
        fresh = itertools.count()
        with tempfile.TemporaryDirectory(dir=os.getcwd(), prefix=".bench-flux-") as tmp:  # the jobs see it
            floor_dir = str(Path(tmp, "floor"))
            os.makedirs(floor_dir)
            with FluxClusterExecutor(cache_directory=str(Path(tmp, "cache"))) as exe:
                batch = interleaved(
                    {
                        "executorlib": lambda i: exe.submit(echo, ("flux", next(fresh))).result(timeout=120),
                        "floor": lambda i: _batch_floor(flux, floor_dir, next(fresh)),
                    },
                    n,
                    warmup=1,
                    rounds=n,
                )
    notes.append(
        f"flux: FluxJobExecutor call {per_call * ms:.0f} ms vs flux run -n1 true {run_true * ms:.0f} ms (CLI "
        f"included); pool call median {statistics.median(pool) * ms:.2f} ms; FluxClusterExecutor task "
        f"{statistics.mean(batch['executorlib']) * ms:.0f} ms vs flux batch + worker "
        f"{statistics.mean(batch['floor']) * ms:.0f} ms (mean of {n})"
    )
    return [
        Row(
            "13 FluxJobExecutor, a flux job per call vs flux run -n1 true",
            "ms",
            per_call * ms,
            run_true * ms,
            None,
            [Target("floor", "<=", 1.2)],
        ),
        Row(
            "13 FluxJobExecutor, call on a pool worker (median)",
            "ms",
            statistics.median(pool) * ms,
            None,
            None,
            [Target("abs", "<=", 1.0)],
        ),
        Row(
            f"13 FluxClusterExecutor, 1 task at a time, mean of {n}",
            "ms/call",
            statistics.mean(batch["executorlib"]) * ms,
            statistics.mean(batch["floor"]) * ms,
            None,
            [Target("floor", "<=", 1.1)],
        ),
    ]

"""numpy arrays through sealed shared memory (xl_comm.shared) with real executors: zero copy, writable, and no
memfd outlives its use: consumed, cancelled, its worker dead, the executor shut down or killed with SIGKILL."""

from __future__ import annotations

import gc
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from executorlib import SingleNodeExecutor
from xl_test_helpers import Gate, block_until_released

BIG = 8 << 20  # above xl_comm.shared.SHARED_MIN_BYTES


def memfds() -> int:
    """memfds of xl-comm this process holds: open fds and mapped regions."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += "memfd:xl-comm" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        return count + sum("memfd:xl-comm" in line for line in maps)


def arrived_mapped(array: Any) -> tuple[bool, bool]:
    """On the worker: whether the argument is a mapping of a memfd, and writable."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        mapped = any("memfd:xl-comm" in line for line in maps)
    return mapped, bool(array.flags.writeable)


def incremented(array: Any) -> Any:
    array += 1  # in place: the argument must be writable, as with ProcessPoolExecutor
    return array


def held_memfds() -> int:
    return memfds()


def exit_holding(array: Any) -> None:
    os._exit(3)


@pytest.mark.parametrize("block", [True, False])
def test_arrays_cross_zero_copy_and_are_let_go_with_the_result(block: bool) -> None:
    before = memfds()
    array = np.arange(BIG, dtype=np.uint8)
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        assert exe.submit(arrived_mapped, array).result(timeout=60) == (True, True)
        result = exe.submit(incremented, array).result(timeout=60)
        assert np.array_equal(result, array + 1) and result.flags.writeable
        assert memfds() > before, "the result is a mapping of the worker's memfd, not a copy"
        result[0] = 7  # private: the memfd is sealed, the mapping copy-on-write
        del result
        assert memfds() == before
        if block:
            assert exe.submit(held_memfds).result(timeout=60) == 0, "the worker let its arguments go"


def test_a_cancelled_task_leaves_no_memfd(tmp_path: Path) -> None:
    before = memfds()
    gate = Gate(tmp_path)
    with SingleNodeExecutor(max_workers=1) as exe:
        first = exe.submit(block_until_released, 1, *gate.args("first"))
        gate.wait_started("first")
        queued = exe.submit(incremented, np.zeros(BIG, dtype=np.uint8))
        assert queued.cancel()
        assert memfds() == before
        gate.release()
        assert first.result(timeout=60) == 1
    assert memfds() == before


@pytest.mark.parametrize("block", [True, False])
def test_a_worker_that_dies_holding_an_array_leaves_no_memfd(block: bool) -> None:
    before = memfds()
    with SingleNodeExecutor(max_workers=1, block_allocation=block) as exe:
        future = exe.submit(exit_holding, np.zeros(BIG, dtype=np.uint8))
        with pytest.raises(Exception):  # noqa: B017 - the worker's death, whichever error names it
            future.result(timeout=60)
        assert memfds() == before


def test_shutdown_with_arrays_in_flight_leaves_no_memfd(tmp_path: Path) -> None:
    before = memfds()
    gate = Gate(tmp_path)
    exe = SingleNodeExecutor(max_workers=1, block_allocation=True)
    running = exe.submit(block_until_released, np.zeros(BIG, dtype=np.uint8), *gate.args("running"))
    waiting = [exe.submit(incremented, np.zeros(BIG, dtype=np.uint8)) for _ in range(3)]
    gate.wait_started("running")
    gate.release_later(0.2)
    exe.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=60).nbytes == BIG
    del running, waiting
    assert memfds() == before


_KILLED = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from executorlib import SingleNodeExecutor

    def hold(array, path):
        import os
        open(path, "w").write(str(os.getpid()))
        time.sleep(600)

    exe = SingleNodeExecutor(max_workers=1, block_allocation=sys.argv[1] == "block")
    exe.submit(hold, np.ones(int(sys.argv[2]), dtype=np.uint8), sys.argv[3])
    time.sleep(600)
    """
)


def _shmem_kb() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    raise AssertionError("no Shmem line in /proc/meminfo")


def _wait_exit(pid: int, timeout: float = 30.0) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"process {pid} outlived its executor"
    finally:
        os.close(fd)


@pytest.mark.parametrize("block", ["block", "per-call"])
def test_an_executor_killed_with_sigkill_leaves_no_shared_memory(tmp_path: Path, block: str) -> None:
    """The memfd lives in the worker's mapping and in no file: both processes gone, the kernel has it back.
    Measured on the system's Shmem total, with a margin of half the array for other processes on the host."""
    size = 256 << 20
    script = tmp_path / "killed.py"
    script.write_text(_KILLED)
    pid_file = tmp_path / "worker.pid"
    before = _shmem_kb()
    driver = subprocess.Popen([sys.executable, str(script), block, str(size), str(pid_file)])
    try:
        from xl_test_helpers import wait_for_files

        wait_for_files([pid_file], timeout=60)
        worker = int(pid_file.read_text())
        assert _shmem_kb() - before > size // 1024 // 2, "the array is in shared memory while the task runs"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    _wait_exit(worker)
    assert _shmem_kb() - before < size // 1024 // 2

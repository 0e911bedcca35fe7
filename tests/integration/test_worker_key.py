"""The executor's key never reaches a worker's environment or command line, as the kernel shows them to anyone
running as the user (``/proc/<pid>/environ``, ``/proc/<pid>/cmdline``); the key file a worker reads is gone
once it has read it, and the executor's key directory once it shut down."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
from xl_test_helpers import Gate, block_until_released

TIMEOUT = 60
KEY_FILE_VARIABLE = b"XL_COMM_KEY_FILE="


def _have_mpi() -> bool:
    from xl_spawn import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


def _proc_file(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _inspect_descendants(key: bytes, earlier: set[int]) -> tuple[int, list[str]]:
    """Check every process below this one; returns how many run the worker (not counting ``earlier`` ones, of
    earlier tests and still exiting), and the key files they name."""
    secret = key.hex().encode()
    workers, key_files = 0, []
    for process in psutil.Process().children(recursive=True):
        environ, cmdline = _proc_file(process.pid, "environ"), _proc_file(process.pid, "cmdline")
        assert secret not in environ.lower(), f"the key is in the environment of {cmdline!r}"
        assert secret not in cmdline.lower(), f"the key is on the command line {cmdline!r}"
        assert key not in environ and key not in cmdline
        # A worker forked by the fork server shows the server's command line but the worker module's name.
        forked = _proc_file(process.pid, "comm").strip() == b"xl_comm.worker"
        started = b"xl_comm.worker" in cmdline and b"xl_spawn.forkserver" not in cmdline
        if (forked or started) and b"mpiexec" not in cmdline.split(b"\0")[0] and process.pid not in earlier:
            workers += 1
        for entry in environ.split(b"\0"):
            if entry.startswith(KEY_FILE_VARIABLE):
                key_files.append(os.fsdecode(entry[len(KEY_FILE_VARIABLE) :]))
    return workers, key_files


CASES = [
    pytest.param({"block_allocation": True}, 1, id="block"),
    pytest.param({"block_allocation": False}, 1, id="one-process"),
    pytest.param(
        {"block_allocation": True},
        2,
        id="block-mpiexec",
        marks=pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec"),
    ),
    pytest.param(
        {"block_allocation": False},
        2,
        id="one-process-mpiexec",
        marks=pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec"),
    ),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("options", "cores"), CASES)
def test_the_key_is_nowhere_in_proc_while_a_task_runs(
    make_executor: Any, tmp_path: Path, options: dict[str, Any], cores: int
) -> None:
    gate = Gate(tmp_path)
    earlier = {process.pid for process in psutil.Process().children(recursive=True)}
    exe = make_executor(max_workers=1, resource_dict={"cores": cores}, **options)
    key: bytes = exe._scheduler._hub.key
    future = exe.submit(block_until_released, "done", *gate.args("task"))
    try:
        gate.wait_started("task", timeout=TIMEOUT)
        workers, key_files = _inspect_descendants(key, earlier)
        # one process per call may have started the next one-core worker ahead: one more (a forked one shows
        # its key file's name in no /proc file at all, as the fork server's child changed only os.environ)
        spare = 1 if cores == 1 and not options["block_allocation"] else 0
        assert cores <= workers <= cores + spare, "every rank of the running worker should have been inspected"
        key_dirs = list(exe._scheduler._hub._key_files._directories.values())
        assert key_files or key_dirs, "the worker was told where its key file was"
        assert not [path for path in key_files if os.path.exists(path)], "a worker left its key file behind"
    finally:
        gate.release()
    assert future.result(timeout=TIMEOUT) == ("done" if cores == 1 else ["done"] * cores)
    exe.shutdown(wait=True)
    left = [path for path in key_files if os.path.exists(os.path.dirname(path))]
    assert not left + [path for path in key_dirs if os.path.exists(path)], "key directory left over"

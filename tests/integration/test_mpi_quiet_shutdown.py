"""An idle block-allocation pool of MPI workers shuts down without mpiexec's "BAD TERMINATION" banner (issue 18
item 4): a worker still starting when the pool stops is told to stop once it says hello, not sent SIGTERM."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RUNS = 4
RUN_TIMEOUT = 120

SCRIPT = textwrap.dedent(
    """
    from executorlib import SingleNodeExecutor

    def add_one(x: int) -> int:
        return x + 1

    if __name__ == "__main__":
        with SingleNodeExecutor(max_workers=2, block_allocation=True, resource_dict={"cores": 2}) as exe:
            print(exe.submit(add_one, 1).result(timeout=60))
    """
)


def _have_mpi() -> bool:
    from xl_spawn import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


pytestmark = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")


@pytest.mark.timeout(RUNS * RUN_TIMEOUT)
def test_idle_mpi_pool_exits_without_a_termination_banner(tmp_path: Path) -> None:
    script = tmp_path / "idle_pool.py"
    script.write_text(SCRIPT)
    for run in range(RUNS):
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        # Hydra prints its banner on stdout, other launchers on stderr: both must be clean.
        assert done.returncode == 0, f"run {run}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert done.stdout == "[2, 2]\n", f"run {run}: stdout\n{done.stdout}"
        assert done.stderr == "", f"run {run}: stderr\n{done.stderr}"

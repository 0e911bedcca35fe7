"""Real MPI ranks: the argv from mpiexec_argv, started by SubprocessSpawner, wires mpi4py's COMM_WORLD."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from spawn_helpers import python_argv
from xl_spawn import MpiFlavour, SubprocessSpawner, detect_mpi_flavour, find_mpiexec, mpi4py_available, mpiexec_argv

RANK_CODE = (
    "import sys; from mpi4py import MPI; c = MPI.COMM_WORLD; "
    "open(sys.argv[1] + '/rank-%d' % c.Get_rank(), 'w').write('%d %d' % (c.Get_rank(), c.Get_size()))"
)


@pytest.fixture(scope="module")
def mpi() -> tuple[str, MpiFlavour]:
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec beside sys.executable or on PATH: pip install mpich (or another MPI) to run this")
    if not mpi4py_available():
        pytest.skip(f"mpi4py is not installed for {sys.executable}: pip install mpi4py to run this")
    return launcher, detect_mpi_flavour(launcher, timeout=60)


def run_ranks(mpi: tuple[str, MpiFlavour], ranks: int, out: Path) -> dict[int, str]:
    launcher, flavour = mpi
    # More ranks than cores needs the flag only with Open MPI; MPICH oversubscribes silently.
    oversubscribe = flavour is MpiFlavour.OPENMPI
    argv = mpiexec_argv(
        ranks, [*python_argv(RANK_CODE), str(out)], flavour=flavour, launcher=launcher, oversubscribe=oversubscribe
    )
    with SubprocessSpawner(terminate_timeout=5.0) as spawner:
        spawner.bootup(argv)
        assert spawner.wait(timeout=90) == 0, f"{argv} failed"
    return {int(path.name.split("-")[1]): path.read_text() for path in out.glob("rank-*")}


def test_two_ranks_see_a_world_of_two(mpi: tuple[str, MpiFlavour], tmp_path: Path) -> None:
    assert run_ranks(mpi, 2, tmp_path) == {0: "0 2", 1: "1 2"}


def test_four_ranks_on_two_cores(mpi: tuple[str, MpiFlavour], tmp_path: Path) -> None:
    assert run_ranks(mpi, 4, tmp_path) == {rank: f"{rank} 4" for rank in range(4)}

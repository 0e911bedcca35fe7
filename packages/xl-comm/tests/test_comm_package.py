"""Public names, and what the worker's entry point and the MPI ranks import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import xl_comm


def test_public_names() -> None:
    # executorlib reaches xl-comm only through these (an import-linter contract forbids its submodules)
    for name in xl_comm.__all__:
        assert getattr(xl_comm, name) is not None
        assert name in dir(xl_comm)
    assert {"EXIT_TEAM_ABORTED", "KEY_FILE_ENV", "Kind", "discard_key_file", "pack_task"} <= set(xl_comm.__all__)
    assert xl_comm.__version__


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        xl_comm.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return eval(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.timeout(60)
def test_the_worker_does_not_load_the_executor_side() -> None:
    # every worker start pays for what `python -m xl_comm.worker` imports
    executor_side = ("xl_comm.hub", "xl_comm.assist", "xl_comm.team", "xl_comm.mpi_worker", "mpi4py", "argparse")
    assert _loaded_after("import xl_comm.worker", executor_side) == []


@pytest.mark.timeout(60)
def test_mpi_ranks_share_the_loop_not_the_entry_point() -> None:
    # under `python -m xl_comm.worker --mpi` the entry point is __main__; importing it again would run a copy
    assert _loaded_after("import xl_comm.mpi_worker", ("xl_comm.worker", "xl_comm.worker_loop")) == [
        "xl_comm.worker_loop"
    ]


@pytest.mark.timeout(60)
def test_the_command_line_is_unchanged() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xl_comm.worker", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("usage: python -m xl_comm.worker")
    for flag in ("--address", "--worker-id", "--worker-index", "--one-shot", "--mpi", "--connect-timeout"):
        assert flag in out.stdout

"""What executorlib 1.x users see without configuring anything (compat-1x.md §12): log_obj_size's sizes on stderr
at WARNING, one CacheWarning per unwritable cache directory, a warning for init_function with a cache, and a
warning naming a misspelt file-mode resource key."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from xl_test_helpers import add, init_offset

TIMEOUT = 60

SCRIPT = """
from executorlib import SingleNodeExecutor
with SingleNodeExecutor(max_workers=1, block_allocation={block}, log_obj_size={log}) as exe:
    print(exe.submit(sum, [1, 2]).result(timeout=60))
"""


@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
@pytest.mark.parametrize("log_obj_size", [True, False])
def test_log_obj_size_prints_each_size_on_stderr_without_logging_set_up(
    tmp_path: Path, block_allocation: bool, log_obj_size: bool
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(block=block_allocation, log=log_obj_size))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.split() == ["3"], done.stderr
    sizes = [line for line in done.stderr.splitlines() if line.startswith("Send dictionary of size: ")]
    assert len(sizes) == (1 if log_obj_size else 0), done.stderr
    if sizes:
        assert int(sizes[0].rsplit(" ", 1)[1]) > 0


def test_log_obj_size_logs_at_warning_on_the_executorlib_logger(make_executor: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="executorlib")
    exe = make_executor(log_obj_size=True)
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3
    [record] = [r for r in caplog.records if r.getMessage().startswith("Send dictionary of size: ")]
    assert (record.name, record.levelno) == ("executorlib", logging.WARNING)


def test_an_unwritable_cache_directory_warns_once_per_directory_naming_the_file_parent(
    make_executor: Any, tmp_path: Path
) -> None:
    from executorlib.errors import CacheWarning

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = str(blocker / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two executors, one directory: one warning
            exe = make_executor(cache_directory=cache)
            assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3
            exe.shutdown()
    mine = [w for w in caught if cache in str(w.message)]
    assert len(mine) == 1, [str(w.message) for w in caught]
    assert mine[0].category is CacheWarning and issubclass(CacheWarning, UserWarning)
    assert f"a parent is a file, not a directory: {blocker}" in str(mine[0].message)


def test_init_function_with_a_cache_directory_warns_at_construction(make_executor: Any, tmp_path: Path) -> None:
    from executorlib import SingleNodeExecutor

    with pytest.warns(UserWarning, match="init_function together with cache_directory") as record:
        exe = SingleNodeExecutor(
            max_workers=1, block_allocation=True, init_function=init_offset, cache_directory=str(tmp_path)
        )
    exe.shutdown()
    assert record[0].filename == __file__, "the warning names the user's line"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_executor(max_workers=1, block_allocation=True, init_function=init_offset)


def test_a_misspelt_key_in_a_dry_run_is_named_with_the_closest_key(tmp_path: Path) -> None:
    """1.x warns and hands the key to the job script; so {"core": 40} no longer passes unseen as a 1-core job."""
    from executorlib import SlurmClusterExecutor
    from executorlib.errors import ResourceKeyWarning

    exe = SlurmClusterExecutor(cache_directory=str(tmp_path))
    try:
        with pytest.warns(ResourceKeyWarning, match=r"\['core'\].*Did you mean 'cores'\?"):
            script = exe.dry_run(add, 1, 2, resource_dict={"core": 40})
        assert "#!/bin/bash" in script
    finally:
        exe.shutdown()


def _have_mpi() -> bool:
    import importlib.util

    from xl_spawn import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


MPI_POOL_SCRIPT = """
import time
from executorlib import SingleNodeExecutor
with SingleNodeExecutor(max_workers=2, max_cores=4, block_allocation=True, resource_dict={{"cores": 2}}) as exe:
    time.sleep({delay})
print("closed")
"""


@pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")
@pytest.mark.parametrize("delay", [0.0, 0.2, 0.4])
def test_a_pool_of_mpi_workers_closed_while_booting_is_quiet(tmp_path: Path, delay: float) -> None:
    """Killing mpiexec's ranks while they boot made MPICH print its BAD TERMINATION banner; they are told to stop
    once they have said hello instead."""
    script = tmp_path / "run.py"
    script.write_text(MPI_POOL_SCRIPT.format(delay=delay))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.split() == ["closed"], done.stderr
    assert "BAD TERMINATION" not in done.stdout + done.stderr, done.stdout + done.stderr

"""``resource_dict={"cores": N}``: calls on N real mpi4py ranks (the venv's mpich wheel), end to end."""

from __future__ import annotations

import importlib.util
import os
import time

import psutil
import pytest
from xl_test_helpers import (
    CustomError,
    get_cwd,
    get_env,
    mpi_kill_rank,
    mpi_kill_rank_once,
    mpi_raise_on_rank,
    mpi_raise_then_allreduce,
    mpi_raise_then_barrier,
    mpi_rank_size,
    mpi_sum_of_ranks,
)

TIMEOUT = 60


def _have_mpi() -> bool:
    from xl_spawn import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


pytestmark = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_calc_example_gives_every_rank_in_order(make_executor, ranks: int) -> None:
    exe = make_executor(max_cores=4)  # 4 ranks on 2 CPUs: oversubscribed on purpose (the default budget is the CPUs)
    result = exe.submit(mpi_rank_size, 3, resource_dict={"cores": ranks}).result(timeout=TIMEOUT)
    expected = (3, 1, 0) if ranks == 1 else [(3, ranks, rank) for rank in range(ranks)]
    assert result == expected  # one rank: the plain value (no mpiexec at all); several: a list in rank order


def test_block_allocation_with_ranks(make_executor) -> None:
    exe = make_executor(max_cores=2, block_allocation=True, resource_dict={"cores": 2})
    futures = [exe.submit(mpi_sum_of_ranks, i) for i in range(5)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [[1 + 2 * i] * 2 for i in range(5)]


def test_mixed_rank_counts_share_the_core_budget(make_executor) -> None:
    exe = make_executor(max_cores=2)
    futures = [exe.submit(mpi_rank_size, i, resource_dict={"cores": 1 + i % 2}) for i in range(4)]
    results = [f.result(timeout=TIMEOUT) for f in futures]
    assert results == [(0, 1, 0), [(1, 2, 0), (1, 2, 1)], (2, 1, 0), [(3, 2, 0), (3, 2, 1)]]


@pytest.mark.parametrize("block_allocation", [False, True])
def test_an_exception_on_one_rank_names_the_rank_and_host(make_executor, block_allocation: bool) -> None:
    if block_allocation:
        exe = make_executor(max_workers=1, block_allocation=True, resource_dict={"cores": 2})
        future = exe.submit(mpi_raise_on_rank, 1)
    else:
        exe = make_executor()
        future = exe.submit(mpi_raise_on_rank, 1, resource_dict={"cores": 2})
    with pytest.raises(CustomError) as caught:
        future.result(timeout=TIMEOUT)
    assert caught.value.args == ("rank 1 failed", 7)
    cause = str(caught.value.__cause__)
    assert "rank 1 of 2" in cause and os.uname().nodename in cause
    if block_allocation:  # the same worker answers the next call
        assert exe.submit(mpi_sum_of_ranks, 0).result(timeout=TIMEOUT) == [1, 1]


def test_ranks_stuck_after_a_failure_fail_the_call_and_the_pool_replaces_the_worker(make_executor) -> None:
    # Processes of earlier tests that are still exiting are not this pool's.
    earlier = {p.pid for p in psutil.Process().children(recursive=True)}
    exe = make_executor(max_workers=1, block_allocation=True, resource_dict={"cores": 2})
    first_pids = {p.pid for p in psutil.Process().children(recursive=True)} - earlier
    with pytest.raises(ValueError, match="left the others in a barrier") as caught:
        exe.submit(mpi_raise_then_barrier, 1).result(timeout=TIMEOUT)
    assert "rank 0 did not answer" in str(caught.value.__cause__)
    # restart_limit=0, yet the worker that ended itself on purpose is replaced
    assert exe.submit(mpi_sum_of_ranks, 1).result(timeout=TIMEOUT) == [3, 3]
    assert first_pids.isdisjoint(p.pid for p in psutil.Process().children(recursive=True))


def test_a_rank_killed_with_sigkill_fails_the_call_promptly(make_executor) -> None:
    from executorlib.api import ExecutorlibSocketError

    exe = make_executor()
    future = exe.submit(mpi_kill_rank, 1, resource_dict={"cores": 2})
    started = time.monotonic()
    with pytest.raises(ExecutorlibSocketError, match="died with"):
        future.result(timeout=TIMEOUT)
    assert time.monotonic() - started < 10


def test_a_pool_worker_that_lost_a_rank_is_restarted_and_the_call_retried(make_executor, tmp_path) -> None:
    exe = make_executor(max_workers=1, block_allocation=True, resource_dict={"cores": 2}, restart_limit=1)
    future = exe.submit(mpi_kill_rank_once, 1, str(tmp_path / "killed-once"))
    assert future.result(timeout=TIMEOUT) == [0, 1]
    assert (tmp_path / "killed-once").exists()


def test_cwd_and_threads_per_core_reach_every_rank(make_executor, tmp_path) -> None:
    exe = make_executor(max_cores=2)
    cwd = exe.submit(get_cwd, resource_dict={"cores": 2, "cwd": str(tmp_path)}).result(timeout=TIMEOUT)
    assert cwd == [str(tmp_path)] * 2
    threads = exe.submit(get_env, "OMP_NUM_THREADS", resource_dict={"threads_per_core": 2}).result(timeout=TIMEOUT)
    assert threads == "2"


def test_futures_of_mpi_calls_feed_other_calls(make_executor) -> None:
    exe = make_executor()
    first = exe.submit(mpi_sum_of_ranks, 1, resource_dict={"cores": 2})
    second = exe.submit(sum, first)
    assert second.result(timeout=TIMEOUT) == 6


def test_gpus_are_split_between_workers_from_cuda_visible_devices(make_executor, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7,9")
    exe = make_executor(max_cores=2)
    got = exe.submit(get_env, "CUDA_VISIBLE_DEVICES", resource_dict={"cores": 2, "gpus_per_core": 2})
    assert got.result(timeout=TIMEOUT) == ["3,5,7,9"] * 2
    pool = make_executor(max_workers=2, block_allocation=True, resource_dict={"gpus_per_core": 2})
    seen = {pool.submit(get_env, "CUDA_VISIBLE_DEVICES").result(timeout=TIMEOUT) for _ in range(8)}
    assert seen <= {"3,5", "7,9"}


def test_more_gpus_than_visible_is_an_error_naming_the_count(make_executor, monkeypatch) -> None:
    from executorlib.api import ResourceDictError

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    exe = make_executor()
    with pytest.raises(ResourceDictError, match=r"needs 4 GPU\(s\), but 2 are visible"):
        exe.submit(get_env, "X", resource_dict={"cores": 2, "gpus_per_core": 2})
    with pytest.raises(ValueError, match="need 6 GPUs, but 2 are visible"):
        make_executor(max_workers=3, block_allocation=True, resource_dict={"gpus_per_core": 2})


def test_openmpi_oversubscribe_with_mpich_is_an_error_at_construction(make_executor) -> None:
    from xl_spawn import MpiFlavour, detect_mpi_flavour, find_mpiexec

    launcher = find_mpiexec()
    assert launcher is not None
    if detect_mpi_flavour(launcher) is not MpiFlavour.MPICH:
        pytest.skip(f"{launcher} is not MPICH")
    with pytest.raises(ValueError, match=r"MPICH starts more ranks than cores by itself.*drop openmpi_oversubscribe"):
        make_executor(openmpi_oversubscribe=True)


def test_cores_without_mpi_is_an_error_at_submit_naming_what_to_install(make_executor, monkeypatch) -> None:
    from executorlib.api import ResourceDictError
    from executorlib.launchers.local import LocalLauncher

    monkeypatch.setattr(LocalLauncher, "_launcher", lambda self: None)
    exe = make_executor()
    with pytest.raises(ResourceDictError, match=r"resource_dict\['cores'\] = 2.*pip install mpi4py mpich"):
        exe.submit(mpi_rank_size, 1, resource_dict={"cores": 2})


def test_a_rank_that_raised_while_rank_0_holds_the_gil_ends_the_job_with_a_clear_error(make_executor) -> None:
    from executorlib.api import ExecutorlibSocketError

    exe = make_executor(max_workers=1, block_allocation=True, resource_dict={"cores": 2})
    with pytest.raises(ExecutorlibSocketError, match="an MPI rank raised while rank 0 waited"):
        exe.submit(mpi_raise_then_allreduce, 1).result(timeout=TIMEOUT)


# -- the Executor contract with cores=2 ------------------------------------------------------------------------
# The shared contract suite compares plain values; a call on N ranks returns N of them. These are its points for
# two-rank calls in both modes, with the rank lists spelled out.

MODES = [
    pytest.param({"max_cores": 4}, {"cores": 2}, id="one-process"),
    pytest.param({"max_workers": 2, "block_allocation": True, "resource_dict": {"cores": 2}}, {}, id="block"),
]


@pytest.mark.parametrize(("options", "per_call"), MODES)
def test_contract_map_callbacks_and_exceptions_on_two_ranks(make_executor, options, per_call) -> None:
    import threading

    exe = make_executor(**options)
    # map() takes no resource_dict: on the pool it runs on the workers' two ranks, else on one
    mapped = list(exe.map(mpi_sum_of_ranks, range(3), timeout=TIMEOUT))
    assert mapped == ([0, 1, 2] if per_call else [[1, 1], [3, 3], [5, 5]])
    future = exe.submit(mpi_rank_size, 5, resource_dict=per_call)
    called = threading.Event()
    future.add_done_callback(lambda f: called.set())
    assert future.result(timeout=TIMEOUT) == [(5, 2, 0), (5, 2, 1)]
    assert called.wait(TIMEOUT)
    failed = exe.submit(mpi_raise_on_rank, 0, resource_dict=per_call)
    assert type(failed.exception(timeout=TIMEOUT)) is CustomError
    assert exe.submit(mpi_sum_of_ranks, 2, resource_dict=per_call).result(timeout=TIMEOUT) == [5, 5]


@pytest.mark.parametrize(("options", "per_call"), MODES)
def test_contract_cancel_and_shutdown_on_two_ranks(make_executor, gate, options, per_call) -> None:
    from xl_test_helpers import block_until_released

    exe = make_executor(**{**options, "max_cores": 2} if "max_cores" in options else {**options, "max_workers": 1})
    running = exe.submit(block_until_released, "ran", *gate.args("first"), resource_dict=per_call)
    gate.wait_started("first")
    queued = [exe.submit(mpi_sum_of_ranks, i, resource_dict=per_call) for i in range(3)]
    assert queued[0].cancel()
    exe.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    gate.release()
    assert running.result(timeout=TIMEOUT) == ["ran", "ran"]


def test_a_cached_mpi_result_comes_back_without_starting_mpiexec(make_executor, tmp_path) -> None:
    import psutil as ps
    from xl_cache import get_cache_data

    cache = str(tmp_path / "cache")
    first = make_executor(cache_directory=cache)
    assert first.submit(mpi_rank_size, 8, resource_dict={"cores": 2}).result(timeout=TIMEOUT) == [(8, 2, 0), (8, 2, 1)]
    first.shutdown(wait=True)
    second = make_executor(cache_directory=cache)
    before = {p.pid for p in ps.Process().children(recursive=True)}
    hit = second.submit(mpi_rank_size, 8, resource_dict={"cores": 2})
    assert hit.done() and hit.result(timeout=0) == [(8, 2, 0), (8, 2, 1)]
    assert {p.pid for p in ps.Process().children(recursive=True)} <= before  # no mpiexec was started
    [entry] = get_cache_data(cache)
    assert entry["output"] == [(8, 2, 0), (8, 2, 1)] and entry["resource_dict"]["cores"] == 2

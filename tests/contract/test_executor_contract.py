"""The ``concurrent.futures.Executor`` contract, run against every executor kind.

The ``stdlib-process-pool`` parameter runs the same tests against ``ProcessPoolExecutor`` to validate the
tests themselves; tests that need more than the stdlib offers (cloudpickle for lambdas, closures and
dynamic modules) skip it. The ``test-cluster-file-mode`` parameter runs them against ``TestClusterExecutor``
(one task file per call); the few cases file mode cannot meet by design skip it, naming the reason. Every
blocking call has a timeout.
"""

from __future__ import annotations

import concurrent.futures
import operator
import textwrap
import threading
import time
import types
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, CancelledError, Future
from itertools import repeat

import pytest
from xl_test_helpers import (
    CustomError,
    add,
    block_until_released,
    call_bounded,
    fast_or_blocking,
    identity,
    raise_custom_error,
    raise_value_error,
    sleep_and_return,
    square,
    times_two,
    touch_and_return,
    wait_for_files,
)

TIMEOUT = 60


def triple_in_test_module(x):
    """Defined in the test module itself (not in xl_test_helpers)."""
    return 3 * x


# --- submit and futures -----------------------------------------------------------------------------------


def test_is_a_concurrent_futures_executor(executor_factory):
    assert isinstance(executor_factory(), concurrent.futures.Executor)


def test_submit_returns_result(executor_factory):
    exe = executor_factory()
    future = exe.submit(add, 1, 2)
    assert isinstance(future, Future)
    assert future.result(timeout=TIMEOUT) == 3
    assert future.done() and not future.cancelled()
    assert future.exception(timeout=TIMEOUT) is None


def test_submit_passes_keyword_arguments(executor_factory):
    exe = executor_factory()
    assert exe.submit(add, "a", b="b").result(timeout=TIMEOUT) == "ab"
    assert exe.submit(add, b=[2], a=[1]).result(timeout=TIMEOUT) == [1, 2]


def test_none_and_structured_results(executor_factory):
    exe = executor_factory()
    value = {"a": (1, 2.5, None), "b": [b"bytes", {"nested": frozenset({1})}]}
    assert exe.submit(identity, None).result(timeout=TIMEOUT) is None
    assert exe.submit(identity, value).result(timeout=TIMEOUT) == value


def test_done_callback_called_once_with_the_future(executor_factory):
    exe = executor_factory()
    calls = []
    called = threading.Event()

    def callback(fut):
        calls.append(fut)
        called.set()

    future = exe.submit(square, 7)
    future.add_done_callback(callback)
    assert future.result(timeout=TIMEOUT) == 49
    assert called.wait(TIMEOUT)
    assert calls == [future]


def test_result_timeout_raises_timeout_error(executor_factory, gate):
    exe = executor_factory()
    future = exe.submit(block_until_released, "late", *gate.args("slow"))
    with pytest.raises(TimeoutError):
        future.result(timeout=0.2)
    gate.release()
    assert future.result(timeout=TIMEOUT) == "late"


# --- exceptions -------------------------------------------------------------------------------------------


def test_exception_is_reraised_with_type_and_message(executor_factory):
    exe = executor_factory()
    future = exe.submit(raise_value_error, "boom 42")
    exc = future.exception(timeout=TIMEOUT)
    assert type(exc) is ValueError
    assert str(exc) == "boom 42"
    with pytest.raises(ValueError, match="boom 42"):
        future.result(timeout=TIMEOUT)


def test_custom_exception_keeps_type_and_args(executor_factory):
    exe = executor_factory()
    exc = exe.submit(raise_custom_error, "custom", 7).exception(timeout=TIMEOUT)
    assert type(exc) is CustomError
    assert exc.args == ("custom", 7)


def test_executor_keeps_working_after_a_task_raised(executor_factory):
    exe = executor_factory()
    assert isinstance(exe.submit(raise_value_error, "x").exception(timeout=TIMEOUT), ValueError)
    assert exe.submit(add, 2, 3).result(timeout=TIMEOUT) == 5


# --- map --------------------------------------------------------------------------------------------------


def test_map_yields_results_in_submission_order(executor_factory):
    exe = executor_factory()
    values = list(range(6))
    delays = [0.3, 0.25, 0.2, 0.15, 0.1, 0.0]  # later elements finish first
    assert list(exe.map(sleep_and_return, values, delays, timeout=TIMEOUT)) == values


def test_map_over_multiple_iterables_stops_at_the_shortest(executor_factory):
    exe = executor_factory()
    assert list(exe.map(add, [1, 2, 3], [10, 20], timeout=TIMEOUT)) == [11, 22]
    assert list(exe.map(pow, [2, 3, 4], [5, 2, 0], timeout=TIMEOUT)) == [32, 9, 1]


def test_map_of_empty_iterable(executor_factory):
    exe = executor_factory()
    assert list(exe.map(square, [], timeout=TIMEOUT)) == []


def test_map_raises_at_the_failing_element(executor_factory):
    exe = executor_factory()
    results = exe.map(operator.truediv, [1, 1, 1], [1, 0, 2], timeout=TIMEOUT)
    assert next(results) == 1.0
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_submits_eagerly(executor_factory, tmp_path):
    exe = executor_factory()
    paths = [tmp_path / f"touched_{i}" for i in range(4)]
    results = exe.map(touch_and_return, [str(p) for p in paths], range(4), timeout=TIMEOUT)
    wait_for_files(paths)  # every task ran before the iterator was touched
    assert list(results) == [0, 1, 2, 3]


def test_map_timeout(executor_factory, gate):
    exe = executor_factory()
    started, release = gate.args("slow")
    results = exe.map(block_until_released, ["v"], [started], [release], timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        next(results)
    assert time.monotonic() - t0 < 30


def test_map_early_exit_cancels_leftovers(executor_factory, tmp_path):
    executor_factory.skip_if_file_mode(
        "a Future never turns RUNNING (its job runs in a queue), so cancel() stops a job that already started"
    )
    n = 12
    exe = executor_factory()
    results = exe.map(fast_or_blocking, range(n), repeat(str(tmp_path)), timeout=TIMEOUT)
    assert next(results) == 0
    results.close()  # the generator's cleanup cancels every future that has not started
    (tmp_path / "release").touch()
    call_bounded(lambda: exe.shutdown(wait=True), TIMEOUT, "shutdown(wait=True)")
    done = sorted(int(p.name.split("_")[1]) for p in tmp_path.glob("done_*"))
    started = sorted(int(p.name.split("_")[1]) for p in tmp_path.glob("started_*"))
    assert done == started, "a task that started did not finish"
    # ProcessPoolExecutor(2) runs 2 and has up to 3 more in its call queue; the rest must never run.
    assert len(done) <= n // 2, f"{len(done)} of {n - 1} leftover map tasks ran after the iterator was closed"


def test_map_with_lambda(executor_factory):
    executor_factory.skip_if_reference("pickle cannot ship lambdas")
    exe = executor_factory()
    assert list(exe.map(lambda x: x * x + 1, range(5), timeout=TIMEOUT)) == [1, 2, 5, 10, 17]


def test_map_with_closure(executor_factory):
    executor_factory.skip_if_reference("pickle cannot ship closures")
    offset = 100
    scale = {"factor": 3}

    def shifted(x):
        return x * scale["factor"] + offset

    exe = executor_factory()
    assert list(exe.map(shifted, range(4), timeout=TIMEOUT)) == [100, 103, 106, 109]
    assert exe.submit(shifted, 10).result(timeout=TIMEOUT) == 130


def test_function_defined_in_the_test_module(executor_factory):
    exe = executor_factory()
    assert list(exe.map(triple_in_test_module, range(3), timeout=TIMEOUT)) == [0, 3, 6]


DYNAMIC_SOURCE = textwrap.dedent(
    """
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    def helper(x):
        return x + 1

    def compute(x):
        return Point(helper(x), helper(x) * 2)
    """
)


def test_function_from_a_dynamic_module(executor_factory):
    executor_factory.skip_if_reference("pickle cannot ship functions of a module that is not importable")
    module = types.ModuleType("xl_contract_dynamic_module")  # never registered in sys.modules
    exec(DYNAMIC_SOURCE, module.__dict__)
    exe = executor_factory()
    point = exe.submit(module.compute, 4).result(timeout=TIMEOUT)
    assert (type(point).__name__, point.x, point.y) == ("Point", 5, 10)


def test_function_from_a_main_like_namespace(executor_factory):
    executor_factory.skip_if_reference("pickle cannot ship functions defined in __main__ by a script")
    namespace = {"__name__": "__main__"}
    exec(DYNAMIC_SOURCE, namespace)
    assert namespace["compute"].__module__ == "__main__"
    exe = executor_factory()
    points = list(exe.map(namespace["compute"], [1, 2], timeout=TIMEOUT))
    assert [(p.x, p.y) for p in points] == [(2, 4), (3, 6)]


# --- shutdown ---------------------------------------------------------------------------------------------


def test_shutdown_wait_true_waits_for_running_and_queued_tasks(executor_factory, gate):
    exe = executor_factory()
    blockers = [exe.submit(block_until_released, name, *gate.args(name)) for name in ("a", "b")]
    gate.wait_started("a", "b")
    queued = [exe.submit(square, i) for i in range(4)]
    gate.release_later(0.5)
    t0 = time.monotonic()
    call_bounded(lambda: exe.shutdown(wait=True), TIMEOUT, "shutdown(wait=True)")
    assert time.monotonic() - t0 >= 0.3, "shutdown(wait=True) returned before the running tasks finished"
    assert all(f.done() for f in blockers + queued)
    assert [f.result(timeout=0) for f in blockers] == ["a", "b"]
    assert [f.result(timeout=0) for f in queued] == [0, 1, 4, 9]


def test_shutdown_wait_false_returns_promptly_and_tasks_complete(executor_factory, gate):
    executor_factory.skip_if_file_mode(
        "shutdown(wait=False) cancels the Futures and leaves the jobs running (executorlib 1.x, compat-1x.md §6); "
        "tests/integration/test_file_mode_detach.py checks that"
    )
    exe = executor_factory()
    futures = [exe.submit(block_until_released, name, *gate.args(name)) for name in ("a", "b", "c")]
    gate.wait_started("a", "b")
    t0 = time.monotonic()
    call_bounded(lambda: exe.shutdown(wait=False), TIMEOUT, "shutdown(wait=False)")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"shutdown(wait=False) blocked for {elapsed:.2f} s"
    gate.release()
    assert [f.result(timeout=TIMEOUT) for f in futures] == ["a", "b", "c"]


def test_shutdown_cancel_futures_cancels_queued_and_finishes_running(executor_factory, gate):
    executor_factory.skip_if_file_mode(
        "shutdown(cancel_futures=True) cancels every Future not done and stops its job, running ones included"
    )
    exe = executor_factory()
    running = [exe.submit(block_until_released, name, *gate.args(name)) for name in ("a", "b")]
    gate.wait_started("a", "b")
    queued = [exe.submit(square, i) for i in range(10)]
    gate.release_later(0.5)
    call_bounded(lambda: exe.shutdown(wait=True, cancel_futures=True), TIMEOUT, "shutdown(cancel_futures=True)")
    assert [f.result(timeout=TIMEOUT) for f in running] == ["a", "b"]
    cancelled = [i for i, f in enumerate(queued) if f.cancelled()]
    # ProcessPoolExecutor(2) keeps up to 3 items in its call queue where they can no longer be cancelled.
    assert len(cancelled) >= 5, f"only {cancelled} of the queued futures were cancelled"
    assert queued[-1].cancelled()
    for i, f in enumerate(queued):
        assert f.done()
        if i not in cancelled:
            assert f.result(timeout=0) == i * i
        else:
            with pytest.raises(CancelledError):
                f.result(timeout=0)


def test_cancel_a_queued_future(executor_factory, gate):
    exe = executor_factory()
    running = [exe.submit(block_until_released, name, *gate.args(name)) for name in ("a", "b")]
    gate.wait_started("a", "b")
    queued = [exe.submit(square, i) for i in range(8)]
    assert queued[-1].cancel()
    assert queued[-1].cancelled() and queued[-1].done()
    gate.release()
    assert [f.result(timeout=TIMEOUT) for f in running] == ["a", "b"]
    assert [f.result(timeout=TIMEOUT) for f in queued[:-1]] == [i * i for i in range(7)]
    with pytest.raises(CancelledError):
        queued[-1].result(timeout=0)


@pytest.mark.parametrize("wait", [True, False])
def test_submit_after_shutdown_raises(executor_factory, wait):
    exe = executor_factory()
    assert exe.submit(add, 1, 1).result(timeout=TIMEOUT) == 2
    call_bounded(lambda: exe.shutdown(wait=wait), TIMEOUT, "shutdown()")
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        exe.submit(add, 1, 1)


def test_shutdown_twice_is_harmless(executor_factory):
    exe = executor_factory()
    future = exe.submit(add, 2, 2)
    call_bounded(lambda: exe.shutdown(wait=True), TIMEOUT, "first shutdown()")
    call_bounded(lambda: exe.shutdown(wait=True), TIMEOUT, "second shutdown()")
    assert future.result(timeout=0) == 4


def test_shutdown_of_an_unused_executor(executor_factory):
    exe = executor_factory()
    call_bounded(lambda: exe.shutdown(wait=True), TIMEOUT, "shutdown()")


# --- context manager --------------------------------------------------------------------------------------


def test_context_manager_returns_itself_and_waits(executor_factory):
    exe = executor_factory()
    with exe as entered:
        assert entered is exe
        future = exe.submit(sleep_and_return, "done", 0.3)
    assert future.done()
    assert future.result(timeout=0) == "done"
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        exe.submit(add, 1, 1)


def test_context_manager_does_not_swallow_exceptions(executor_factory):
    exe = executor_factory()
    with pytest.raises(KeyError, match="raised in the with block"), exe:
        future = exe.submit(sleep_and_return, 5, 0.2)
        raise KeyError("raised in the with block")
    assert future.result(timeout=TIMEOUT) == 5
    with pytest.raises(RuntimeError):
        exe.submit(add, 1, 1)


# --- wait and as_completed --------------------------------------------------------------------------------


def test_as_completed_yields_every_future(executor_factory):
    exe = executor_factory()
    futures = [exe.submit(sleep_and_return, i, 0.05 * (5 - i)) for i in range(6)]
    finished = list(concurrent.futures.as_completed(futures, timeout=TIMEOUT))
    assert sorted(finished, key=futures.index) == futures
    assert sorted(f.result(timeout=0) for f in finished) == list(range(6))


def test_wait_all_and_first_completed(executor_factory, gate):
    exe = executor_factory()
    fast = exe.submit(add, 1, 1)
    slow = exe.submit(block_until_released, "slow", *gate.args("slow"))
    done, not_done = concurrent.futures.wait([fast, slow], timeout=TIMEOUT, return_when=FIRST_COMPLETED)
    assert fast in done and slow in not_done
    gate.release()
    done, not_done = concurrent.futures.wait([fast, slow], timeout=TIMEOUT, return_when=ALL_COMPLETED)
    assert done == {fast, slow} and not not_done


def test_wait_first_exception(executor_factory, gate):
    exe = executor_factory()
    failing = exe.submit(raise_value_error, "first")
    slow = exe.submit(block_until_released, "slow", *gate.args("slow"))
    done, not_done = concurrent.futures.wait([failing, slow], timeout=TIMEOUT, return_when=FIRST_EXCEPTION)
    assert failing in done and slow in not_done
    assert isinstance(failing.exception(timeout=0), ValueError)


# --- volume -----------------------------------------------------------------------------------------------


def test_many_small_tasks(executor_factory):
    # A fresh process per call costs ~0.1 s on 2 cores; the 300-task version of that mode is marked slow.
    n = 40 if executor_factory.kind == "one-process" else 300
    exe = executor_factory()
    futures = [exe.submit(add, i, 1) for i in range(n)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(1, n + 1))


@pytest.mark.slow
def test_many_small_tasks_one_process_mode(make_executor):
    exe = make_executor(max_workers=2)
    futures = [exe.submit(add, i, 1) for i in range(300)]
    assert [f.result(timeout=2 * TIMEOUT) for f in futures] == list(range(1, 301))


def test_large_numpy_argument_and_result(executor_factory):
    np = pytest.importorskip("numpy")
    array = np.arange(50 * 2**20 // 8, dtype=np.float64)  # 50 MiB
    array[::997] = -1.5
    exe = executor_factory()
    result = exe.submit(times_two, array).result(timeout=2 * TIMEOUT)
    assert result.dtype == array.dtype and result.shape == array.shape
    np.testing.assert_array_equal(result, array * 2)
    assert array[0] == -1.5, "the caller's array was modified"

"""Crash matrix: workers that die, values that do not pickle, init functions that fail.

Each case names what the caller must see: the exception type, the words in its message, which futures fail
(exactly the affected one), how fast (``DETECT_TIMEOUT``), and whether the executor stays usable. Runs in
one-process mode (a fresh worker per call) and in block mode (long-lived workers, ``restart_limit``).
"""

from __future__ import annotations

import logging
import pickle
import re
import threading
import time

import pytest
from xl_test_helpers import (
    CRASHES,
    ExitsOnUnpickle,
    FailsOnUnpickle,
    RaisesOnPickle,
    ReduceBoom,
    add,
    block_until_released,
    crash_once_then_return,
    exit_process,
    failing_init,
    get_pid,
    get_worker_id,
    identity,
    init_token,
    needs_token,
    raise_value_error,
    record_attempt_and_exit,
    return_exits_on_unpickle,
    return_lock,
    sleep_and_get_pid,
    touch_and_return,
)

TIMEOUT = 60
#: A worker's death must reach its Future within a few seconds (design: "within about a second").
DETECT_TIMEOUT = 10
PICKLING_ERRORS = (TypeError, pickle.PicklingError)


def assert_worker_died(exc, exit_name, socket_error_type):
    assert isinstance(exc, socket_error_type), f"expected ExecutorlibSocketError, got {exc!r}"
    assert isinstance(exc, RuntimeError)
    message = str(exc)
    assert exit_name in message, f"{exit_name!r} not named in {message!r}"
    assert re.search(r"worker", message, re.IGNORECASE), f"the worker is not named in {message!r}"


def test_socket_error_is_a_runtime_error(executorlib_api):
    assert issubclass(executorlib_api.ExecutorlibSocketError, RuntimeError)


# --- worker death -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("crash", list(CRASHES))
def test_worker_death_fails_exactly_that_future(executor_factory, executorlib_api, gate, crash):
    task, args, exit_name = CRASHES[crash]
    exe = executor_factory(max_workers=2)
    bystander = exe.submit(block_until_released, "bystander", *gate.args("bystander"))
    gate.wait_started("bystander")
    t0 = time.monotonic()
    victim = exe.submit(task, *args)
    exc = victim.exception(timeout=DETECT_TIMEOUT)
    detected_after = time.monotonic() - t0
    assert_worker_died(exc, exit_name, executorlib_api.ExecutorlibSocketError)
    assert detected_after < DETECT_TIMEOUT
    assert not bystander.done(), "the task on the other worker was disturbed by the crash"
    gate.release()
    assert bystander.result(timeout=TIMEOUT) == "bystander"
    # one-process mode: a fresh process; block mode: the surviving worker
    assert exe.submit(add, 20, 22).result(timeout=TIMEOUT) == 42


def test_block_dead_worker_is_not_replaced_without_restart_limit(make_executor, executorlib_api):
    exe = make_executor(max_workers=2, block_allocation=True)
    exc = exe.submit(exit_process, 3).exception(timeout=DETECT_TIMEOUT)
    assert_worker_died(exc, "EXIT(3)", executorlib_api.ExecutorlibSocketError)
    # Six overlapping tasks: with two live workers they would run on two pids.
    pids = {f.result(timeout=TIMEOUT) for f in [exe.submit(sleep_and_get_pid, 0.2) for _ in range(6)]}
    assert len(pids) == 1, f"the dead worker was replaced: tasks ran on pids {pids}"
    assert exe.submit(get_worker_id).result(timeout=TIMEOUT) in range(2)


def test_block_all_workers_dead_fails_pending_and_later_tasks(make_executor, executorlib_api, tmp_path):
    exe = make_executor(max_workers=1, block_allocation=True)
    victim = exe.submit(exit_process, 3)
    pending = [exe.submit(touch_and_return, str(tmp_path / f"ran_{i}"), i) for i in range(3)]
    assert_worker_died(victim.exception(timeout=DETECT_TIMEOUT), "EXIT(3)", executorlib_api.ExecutorlibSocketError)
    later = exe.submit(add, 1, 1)
    for future in [*pending, later]:
        exc = future.exception(timeout=DETECT_TIMEOUT)
        assert isinstance(exc, executorlib_api.ExecutorlibSocketError), f"expected a socket error, got {exc!r}"
    assert not list(tmp_path.glob("ran_*")), "a task ran although no worker was left"


def test_block_two_workers_both_crash_then_later_tasks_fail(make_executor, executorlib_api):
    exe = make_executor(max_workers=2, block_allocation=True)
    for code in (3, 4):
        exc = exe.submit(exit_process, code).exception(timeout=DETECT_TIMEOUT)
        assert_worker_died(exc, f"EXIT({code})", executorlib_api.ExecutorlibSocketError)
    exc = exe.submit(add, 1, 1).exception(timeout=DETECT_TIMEOUT)
    assert isinstance(exc, executorlib_api.ExecutorlibSocketError)


# --- restart_limit ----------------------------------------------------------------------------------------


def test_restart_limit_retries_the_crashing_task_then_gives_up(make_executor, executorlib_api, tmp_path):
    attempts = tmp_path / "attempts"
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=2)
    exc = exe.submit(record_attempt_and_exit, str(attempts), 3).exception(timeout=3 * DETECT_TIMEOUT)
    assert_worker_died(exc, "EXIT(3)", executorlib_api.ExecutorlibSocketError)
    pids = attempts.read_text().split()
    assert len(pids) == 3, f"restart_limit=2 must run the task 3 times, it ran {len(pids)} times"
    assert len(set(pids)) == 3, "each attempt must run in a new worker process"
    # The only worker used up its restarts: nothing is left to run later tasks, and they must not hang.
    later = exe.submit(add, 1, 1).exception(timeout=DETECT_TIMEOUT)
    assert isinstance(later, executorlib_api.ExecutorlibSocketError)


def test_restart_limit_task_that_crashes_once_succeeds(make_executor, tmp_path):
    marker = tmp_path / "crashed_once"
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=1, init_function=init_token)
    first_pid = exe.submit(get_pid).result(timeout=TIMEOUT)
    assert exe.submit(crash_once_then_return, str(marker), "ok").result(timeout=3 * DETECT_TIMEOUT) == "ok"
    assert marker.exists()
    # The restarted worker is a new process that ran the init function again and keeps the worker id range.
    assert exe.submit(get_pid).result(timeout=TIMEOUT) != first_pid
    assert exe.submit(needs_token).result(timeout=TIMEOUT) == "init-ok"
    assert exe.submit(get_worker_id).result(timeout=TIMEOUT) == 0


def test_a_restarted_worker_is_reported_at_warning(make_executor, tmp_path, caplog):
    """A crash that restart_limit absorbs is not silent: one WARNING on the executorlib logger names the worker
    and the restarts left."""
    caplog.set_level(logging.WARNING, logger="executorlib")
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=1)
    crashed = exe.submit(get_pid).result(timeout=TIMEOUT)
    assert exe.submit(crash_once_then_return, str(tmp_path / "m"), 1).result(timeout=3 * DETECT_TIMEOUT) == 1
    [record] = [r for r in caplog.records if r.name == "executorlib" and "restart_limit" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "died" in record.getMessage() and str(crashed) in record.getMessage()
    assert "0 of restart_limit=1" in record.getMessage()


def test_restart_limit_with_two_workers_recovers_two_crashes(make_executor, tmp_path):
    # Which worker takes which attempt is up to the scheduler; at least one worker survives either way.
    exe = make_executor(max_workers=2, block_allocation=True, restart_limit=1)
    markers = [tmp_path / f"crashed_{i}" for i in range(2)]
    futures = [exe.submit(crash_once_then_return, str(m), i) for i, m in enumerate(markers)]
    assert [f.result(timeout=3 * DETECT_TIMEOUT) for f in futures] == [0, 1]
    assert [f.result(timeout=TIMEOUT) for f in [exe.submit(add, i, i) for i in range(4)]] == [0, 2, 4, 6]


# --- pickling failures ------------------------------------------------------------------------------------


def test_unpicklable_argument_fails_the_future_not_submit(executor_factory):
    exe = executor_factory(max_workers=1)
    before = exe.submit(get_pid).result(timeout=TIMEOUT)
    future = exe.submit(identity, threading.Lock())  # must not raise here
    exc = future.exception(timeout=TIMEOUT)
    assert isinstance(exc, PICKLING_ERRORS), f"expected a pickling error, got {exc!r}"
    assert "lock" in str(exc).lower()
    after = exe.submit(get_pid).result(timeout=TIMEOUT)
    if executor_factory.block_allocation:
        assert after == before, "the argument never reached the worker, yet the worker was replaced"


def test_unpicklable_result_fails_the_future(executor_factory):
    exe = executor_factory(max_workers=1)
    exc = exe.submit(return_lock).exception(timeout=TIMEOUT)
    assert isinstance(exc, PICKLING_ERRORS), f"expected the worker's pickling error, got {exc!r}"
    assert "lock" in str(exc).lower()
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3


def test_exception_in_reduce_fails_the_future_with_that_exception(executor_factory):
    exe = executor_factory(max_workers=1)
    future = exe.submit(identity, RaisesOnPickle())  # must not raise here
    exc = future.exception(timeout=TIMEOUT)
    assert type(exc) is ReduceBoom, f"expected ReduceBoom, got {exc!r}"
    assert "refuses to be pickled" in str(exc)
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3


def test_argument_that_fails_to_unpickle_on_the_worker(executor_factory):
    exe = executor_factory(max_workers=1)
    before = exe.submit(get_pid).result(timeout=TIMEOUT)
    exc = exe.submit(identity, FailsOnUnpickle()).exception(timeout=TIMEOUT)
    assert isinstance(exc, ZeroDivisionError), f"expected the unpickling error, got {exc!r}"
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3
    if executor_factory.block_allocation:
        assert exe.submit(get_pid).result(timeout=TIMEOUT) == before, "the worker did not stay usable"


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
def test_a_result_whose_unpickling_raises_a_base_exception_fails_only_its_future(executor_factory, kind):
    executor_factory.skip_if_reference("the stdlib's result thread dies of it")
    exe = executor_factory()
    exc = exe.submit(return_exits_on_unpickle, kind).exception(timeout=TIMEOUT)
    assert isinstance(exc, Exception) and kind.__name__ in str(exc), f"got {exc!r}"
    unwaited = exe.submit(return_exits_on_unpickle, kind)  # read by the IO thread, nobody helping
    time.sleep(0.5)
    assert isinstance(unwaited.exception(timeout=TIMEOUT), Exception)
    assert [exe.submit(add, i, 1).result(timeout=TIMEOUT) for i in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
def test_an_argument_whose_unpickling_raises_a_base_exception_fails_only_its_future(executor_factory, kind):
    executor_factory.skip_if_reference("the stdlib's worker dies of it")
    exe = executor_factory()
    exc = exe.submit(identity, ExitsOnUnpickle(kind)).exception(timeout=TIMEOUT)
    assert isinstance(exc, Exception) and kind.__name__ in str(exc), f"got {exc!r}"
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3


def test_remote_exception_keeps_the_block_worker(make_executor, remote_traceback_type):
    exe = make_executor(max_workers=1, block_allocation=True)
    before = exe.submit(get_pid).result(timeout=TIMEOUT)
    exc = exe.submit(raise_value_error, "remote").exception(timeout=TIMEOUT)
    assert type(exc) is ValueError and str(exc) == "remote"
    assert isinstance(exc.__cause__, remote_traceback_type)
    assert exe.submit(get_pid).result(timeout=TIMEOUT) == before


# --- init_function ----------------------------------------------------------------------------------------


def test_failing_init_function_fails_every_task(make_executor, remote_traceback_type, tmp_path):
    exe = make_executor(max_workers=2, block_allocation=True, init_function=failing_init)
    futures = [exe.submit(touch_and_return, str(tmp_path / f"ran_{i}"), i) for i in range(4)]
    futures.append(exe.submit(add, 1, 1))
    for future in futures:
        exc = future.exception(timeout=DETECT_TIMEOUT)
        assert type(exc) is LookupError, f"expected the init function's LookupError, got {exc!r}"
        assert "init failed on purpose" in str(exc)
        assert isinstance(exc.__cause__, remote_traceback_type)
        assert "failing_init" in str(exc.__cause__)
    assert not list(tmp_path.glob("ran_*")), "a task ran on a worker whose init function failed"

"""Futures as arguments of ``SingleNodeExecutor.submit`` (executorlib 1.x semantics), end to end.

Every wait is bounded: ``result()`` / ``exception()`` get a timeout, shutdowns run through ``call_bounded``, so a
task left pending fails its test instead of hanging the run. Tasks that must hold still wait on a ``gate`` file,
never on a sleep of a guessed length. Each test runs for ``block_allocation=True`` and ``False`` (the
``executor_factory`` fixture, ``max_workers=2``) unless it only concerns the parent process (graph mode).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from concurrent.futures import CancelledError, Future, wait
from pathlib import Path

import pytest
from xl_test_helpers import (
    CustomError,
    add,
    add_offset,
    block_until_released,
    call_bounded,
    identity,
    pack,
    raise_custom_error,
    raise_value_error,
    sleep_and_return,
    square,
    times_two,
    touch_and_add,
    touch_and_return,
    wait_until,
)

TIMEOUT = 60
SHUTDOWN = 30


def results(futures, timeout=TIMEOUT):
    return [f.result(timeout=timeout) for f in futures]


def complete_from_thread(future, value):
    """Complete a plain Future from another thread, as a producer outside the executor would."""
    thread = threading.Thread(target=future.set_result, args=(value,), daemon=True)
    thread.start()
    thread.join(TIMEOUT)


def shutdown(exe, **kwargs):
    call_bounded(lambda: exe.shutdown(**kwargs), SHUTDOWN, what=f"shutdown({kwargs})")


# --- substitution ---------------------------------------------------------------------------------------------


def test_future_argument_is_waited_for_and_its_result_passed(executor_factory):
    exe = executor_factory()
    upstream = exe.submit(sleep_and_return, 20, 0.2)
    assert exe.submit(add, upstream, 1).result(timeout=TIMEOUT) == 21
    assert exe.submit(add, a=1, b=upstream).result(timeout=TIMEOUT) == 21
    assert exe.submit(add, upstream, upstream).result(timeout=TIMEOUT) == 40  # the same Future twice


def test_a_done_future_argument_runs_at_once(executor_factory):
    exe = executor_factory()
    done = Future()
    done.set_result(5)
    assert exe.submit(square, done).result(timeout=TIMEOUT) == 25


def test_futures_nested_in_list_dict_tuple_set_and_kwargs(executor_factory):
    exe = executor_factory()
    f1, f2, f3, f4, f5 = (exe.submit(identity, v) for v in (1, 2, 3, 4, 5))
    call = exe.submit(
        pack,
        [f1, 10, [f2]],
        {"k": f2, "n": 3, "deep": {"x": (f3,)}},
        (f3, 4),
        {f4, 40},
        kw_list=[f5],
        kw_dict={"a": f1},
        kw_plain=f2,
    )
    args, kwargs = call.result(timeout=TIMEOUT)
    assert args == ([1, 10, [2]], {"k": 2, "n": 3, "deep": {"x": (3,)}}, (3, 4), {4, 40})
    assert [type(a) for a in args] == [list, dict, tuple, set]
    assert kwargs == {"kw_list": [5], "kw_dict": {"a": 1}, "kw_plain": 2}


def test_plain_future_from_outside_the_executor(executor_factory):
    exe = executor_factory()
    outside = Future()
    dependent = exe.submit(add, outside, 1)
    nested = exe.submit(pack, [outside], key={"v": outside})
    assert not dependent.done() and not dependent.running()
    complete_from_thread(outside, 41)
    assert dependent.result(timeout=TIMEOUT) == 42
    assert nested.result(timeout=TIMEOUT) == (([41],), {"key": {"v": 41}})


def test_failed_plain_future_from_outside_fails_dependents(executor_factory, tmp_path):
    exe = executor_factory()
    outside = Future()
    marker = tmp_path / "ran"
    dependent = exe.submit(touch_and_add, str(marker), outside, 1)
    failing = threading.Thread(target=outside.set_exception, args=(CustomError("outside", 1),), daemon=True)
    failing.start()
    failing.join(TIMEOUT)
    assert isinstance(dependent.exception(timeout=TIMEOUT), CustomError)
    shutdown(exe, wait=True)
    assert not marker.exists()


def test_futures_where_they_are_not_looked_for_fail_instead_of_hanging(executor_factory):
    """Dict keys are not substituted (only values are): the Future itself must be pickled, which fails the task."""
    exe = executor_factory()
    upstream = exe.submit(identity, 1)
    upstream.result(timeout=TIMEOUT)
    keyed = exe.submit(pack, {upstream: "key"})
    assert isinstance(keyed.exception(timeout=TIMEOUT), TypeError)  # cannot pickle the Future's lock
    outside = Future()
    unpicklable = exe.submit(pack, outside)
    outside.set_result(threading.Lock())
    assert isinstance(unpicklable.exception(timeout=TIMEOUT), TypeError)


def test_future_of_another_executor(executor_factory, make_executor):
    other = make_executor(max_workers=1, block_allocation=True)
    exe = executor_factory()
    upstream = other.submit(sleep_and_return, 7, 0.1)
    assert exe.submit(times_two, upstream).result(timeout=TIMEOUT) == 14


def test_split_future_and_get_item_from_future_as_arguments(executor_factory):
    from executorlib import get_item_from_future, split_future

    exe = executor_factory()
    quotient, remainder = split_future(exe.submit(divmod, 17, 5), n=2)
    assert exe.submit(add, quotient, remainder).result(timeout=TIMEOUT) == 5
    assert exe.submit(pack, [remainder], q=quotient).result(timeout=TIMEOUT) == (([2],), {"q": 3})
    assert (quotient.result(timeout=TIMEOUT), remainder.result(timeout=TIMEOUT)) == (3, 2)

    record = exe.submit(dict, a=3, b={"inner": 4})
    a = get_item_from_future(record, "a")
    inner = get_item_from_future(get_item_from_future(record, "b"), "inner")
    assert exe.submit(add, a, inner).result(timeout=TIMEOUT) == 7
    # a selector of a selector of a split: still one argument like any other
    first, _ = split_future(exe.submit(identity, ([10, 20], None)), n=2)
    assert exe.submit(square, get_item_from_future(first, 1)).result(timeout=TIMEOUT) == 400


def test_selector_of_a_failed_index_fails_its_dependent(executor_factory):
    from executorlib import get_item_from_future

    exe = executor_factory()
    missing = get_item_from_future(exe.submit(dict, a=1), "nope")
    dependent = exe.submit(add, missing, 1)
    assert isinstance(dependent.exception(timeout=TIMEOUT), KeyError)


# --- shapes -----------------------------------------------------------------------------------------------------


def _chain(exe, length):
    future = exe.submit(identity, 0)
    for _ in range(length):
        future = exe.submit(add, future, 1)
    return future


def _fan_in(exe, width):
    parts = [exe.submit(identity, i) for i in range(width)]
    return exe.submit(sum, parts)


@pytest.mark.parametrize("length", [pytest.param(10, id="10"), pytest.param(50, id="50", marks=pytest.mark.slow)])
def test_chain(executor_factory, length):
    exe = executor_factory()
    assert _chain(exe, length).result(timeout=TIMEOUT) == length


@pytest.mark.parametrize("width", [pytest.param(20, id="20"), pytest.param(100, id="100", marks=pytest.mark.slow)])
def test_fan_in_into_one_reducer(executor_factory, width):
    exe = executor_factory()
    assert _fan_in(exe, width).result(timeout=TIMEOUT) == sum(range(width))


def test_chain_of_50_and_fan_in_of_100_on_block_workers(make_executor):
    """The full sizes, on long-lived workers where they are cheap (the process-per-task variants are slow)."""
    exe = make_executor(max_workers=2, block_allocation=True)
    assert _chain(exe, 50).result(timeout=TIMEOUT) == 50
    assert _fan_in(exe, 100).result(timeout=TIMEOUT) == 4950


def test_random_dag_submitted_from_two_threads(executor_factory):
    """Each task adds up two earlier ones; two threads submit halves while earlier tasks are completing."""
    exe = executor_factory()
    rng = random.Random(1234)
    size = 60 if executor_factory.block_allocation else 16
    parents = [None, None] + [(rng.randrange(i), rng.randrange(i)) for i in range(2, size)]
    expected = [1, 2]
    for i in range(2, size):
        a, b = parents[i]
        expected.append(expected[a] + expected[b])
    futures = [exe.submit(identity, 1), exe.submit(identity, 2)] + [None] * (size - 2)
    ready = [threading.Event() for _ in range(size)]
    ready[0].set()
    ready[1].set()

    def submit_part(indices):
        for i in indices:
            a, b = parents[i]
            assert ready[a].wait(TIMEOUT) and ready[b].wait(TIMEOUT)
            futures[i] = exe.submit(add, futures[a], {"x": futures[b]}["x"])
            ready[i].set()

    threads = [threading.Thread(target=submit_part, args=(range(start, size, 2),), daemon=True) for start in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert all(ready[i].is_set() for i in range(size))
    assert results(futures) == expected


def test_diamond(executor_factory):
    exe = executor_factory()
    top = exe.submit(identity, 3)
    left = exe.submit(square, top)
    right = exe.submit(times_two, top)
    bottom = exe.submit(add, left, right)
    assert bottom.result(timeout=TIMEOUT) == 9 + 6


def test_fan_out(executor_factory):
    exe = executor_factory()
    top = exe.submit(identity, 100)
    leaves = [exe.submit(add_offset, top, offset=i) for i in range(8)]
    assert results(leaves) == [100 + i for i in range(8)]


# --- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raiser", "args", "error_type"),
    [(raise_value_error, ("upstream failed",), ValueError), (raise_custom_error, ("upstream failed", 7), CustomError)],
    ids=["ValueError", "CustomError"],
)
def test_failed_upstream_fails_dependents_without_running_them(executor_factory, tmp_path, raiser, args, error_type):
    exe = executor_factory()
    upstream = exe.submit(raiser, *args)
    markers = [tmp_path / f"ran_{i}" for i in range(4)]
    direct = exe.submit(touch_and_return, str(markers[0]), upstream)
    by_keyword = exe.submit(touch_and_add, str(markers[1]), 1, b=upstream)
    in_list = exe.submit(touch_and_return, str(markers[2]), [1, {"x": upstream}])
    ok = exe.submit(identity, 1)
    mixed = exe.submit(touch_and_add, str(markers[3]), ok, upstream)
    for dependent in (direct, by_keyword, in_list, mixed):
        error = dependent.exception(timeout=TIMEOUT)
        assert isinstance(error, error_type), repr(error)
        assert "upstream failed" in str(error)
    assert ok.result(timeout=TIMEOUT) == 1
    shutdown(exe, wait=True)
    assert not [m.name for m in markers if m.exists()]


def test_failure_propagates_down_a_chain_of_three(executor_factory, tmp_path):
    exe = executor_factory()
    upstream = exe.submit(raise_custom_error, "root cause", 3)
    markers = [tmp_path / f"ran_{i}" for i in range(3)]
    chain = []
    previous = upstream
    for marker in markers:
        previous = exe.submit(touch_and_return, str(marker), previous)
        chain.append(previous)
    for dependent in chain:
        error = dependent.exception(timeout=TIMEOUT)
        assert isinstance(error, CustomError), repr(error)
        assert error.args == ("root cause", 3)
        with pytest.raises(CustomError):
            dependent.result(timeout=TIMEOUT)
    shutdown(exe, wait=True)
    assert not [m.name for m in markers if m.exists()]


def test_failure_and_cancellation_reach_the_end_of_a_long_waiting_chain(make_executor):
    """Nothing runs here (the heads are plain Futures), so 500 links cost only the parent's bookkeeping."""
    exe = make_executor(max_workers=2, block_allocation=True)
    chains = {}
    heads = {"fail": Future(), "cancel": Future()}
    for mode, head in heads.items():
        future, chains[mode] = head, []
        for _ in range(500):
            future = exe.submit(add, future, 1)
            chains[mode].append(future)
    heads["fail"].set_exception(CustomError("head failed", 0))
    assert heads["cancel"].cancel()
    _, not_done = wait([*chains["fail"], *chains["cancel"]], timeout=3)
    pending = {mode: sum(1 for f in chain if f in not_done) for mode, chain in chains.items()}
    assert pending == {"fail": 0, "cancel": 0}
    assert all(isinstance(f.exception(timeout=0), CustomError) for f in chains["fail"])
    assert all(f.cancelled() for f in chains["cancel"])


def test_failure_reaches_split_future_dependents(executor_factory, tmp_path):
    from executorlib import split_future

    exe = executor_factory()
    first, second = split_future(exe.submit(raise_value_error, "no pair"), n=2)
    marker = tmp_path / "ran"
    dependent = exe.submit(touch_and_add, str(marker), first, second)
    assert isinstance(dependent.exception(timeout=TIMEOUT), ValueError)
    shutdown(exe, wait=True)
    assert not marker.exists()


# --- cancellation -----------------------------------------------------------------------------------------------


def _occupy_both_workers(exe, gate):
    blockers = [exe.submit(block_until_released, name, *gate.args(name)) for name in ("w0", "w1")]
    gate.wait_started("w0", "w1")
    return blockers


def test_cancelling_a_queued_upstream_cancels_its_dependents(executor_factory, gate, tmp_path):
    exe = executor_factory()
    blockers = _occupy_both_workers(exe, gate)
    upstream = exe.submit(identity, 1)  # queued behind the gate
    markers = [tmp_path / "ran_dep", tmp_path / "ran_nested"]
    dependent = exe.submit(touch_and_return, str(markers[0]), upstream)
    nested = exe.submit(touch_and_add, str(markers[1]), 1, dependent)
    sibling = exe.submit(add, upstream, exe.submit(identity, 2))
    assert not blockers[0].cancel()  # running: cannot be cancelled, and nothing depends on it
    assert upstream.cancel()
    wait_until(lambda: dependent.cancelled() and nested.cancelled() and sibling.cancelled(), 10, "cancellation")
    for future in (dependent, nested, sibling):
        with pytest.raises(CancelledError):
            future.result(timeout=TIMEOUT)
    gate.release()
    assert results(blockers) == ["w0", "w1"]
    shutdown(exe, wait=True)
    assert not [m.name for m in markers if m.exists()]


def test_cancelling_a_plain_upstream_future_cancels_dependents(executor_factory, tmp_path):
    exe = executor_factory()
    outside = Future()
    running = exe.submit(sleep_and_return, 1, 0.3)
    marker = tmp_path / "ran"
    dependent = exe.submit(touch_and_add, str(marker), outside, running)  # one upstream still running
    downstream = exe.submit(add, dependent, 1)
    assert outside.cancel()
    assert dependent.cancelled() and downstream.cancelled()
    with pytest.raises(CancelledError):
        downstream.result(timeout=TIMEOUT)
    assert running.result(timeout=TIMEOUT) == 1
    shutdown(exe, wait=True)
    assert not marker.exists()


def test_cancelling_a_waiting_dependent_means_it_never_runs(executor_factory, gate, tmp_path):
    exe = executor_factory()
    upstream = exe.submit(block_until_released, 5, *gate.args("up"))
    marker = tmp_path / "ran"
    dependent = exe.submit(touch_and_return, str(marker), upstream)
    downstream = exe.submit(add, dependent, 1)
    gate.wait_started("up")
    assert dependent.cancel()
    assert downstream.cancelled()
    gate.release()
    assert upstream.result(timeout=TIMEOUT) == 5
    shutdown(exe, wait=True)
    assert not marker.exists()


# --- batched ----------------------------------------------------------------------------------------------------


def test_batched_lists_come_in_completion_order(executor_factory):
    exe = executor_factory()
    inputs = [Future() for _ in range(7)]
    batches = exe.batched(inputs, n=3)
    assert len(batches) == 3  # ceil(7 / 3)
    order = [4, 0, 6, 2, 5, 1, 3]
    for count, index in enumerate(order, start=1):
        complete_from_thread(inputs[index], index * 10)
        assert [b.done() for b in batches] == [count >= 3, count >= 6, count >= 7]
    assert results(batches) == [[40, 0, 60], [20, 50, 10], [30]]
    assert exe.batched([], n=3) == []


def test_batched_executor_futures_and_batches_as_arguments(executor_factory):
    exe = executor_factory()
    inputs = [exe.submit(square, i) for i in range(10)]
    batches = exe.batched(inputs, n=3)
    assert len(batches) == 4
    lists = results(batches)
    assert [len(values) for values in lists] == [3, 3, 3, 1]
    assert sorted(v for values in lists for v in values) == [i * i for i in range(10)]
    sums = [exe.submit(sum, batch) for batch in exe.batched([exe.submit(identity, i) for i in range(6)], n=4)]
    assert sorted(len(values) for values in results(exe.batched(inputs, n=4))) == [2, 4, 4]
    assert sum(results(sums)) == 15


def test_batched_fails_a_batch_only_when_all_its_remaining_inputs_failed(executor_factory):
    exe = executor_factory()
    inputs = [
        exe.submit(identity, 1),
        exe.submit(raise_value_error, "bad 1"),
        exe.submit(identity, 2),
        exe.submit(raise_value_error, "bad 2"),
    ]
    first, second = exe.batched(inputs, n=2)
    assert sorted(first.result(timeout=TIMEOUT)) == [1, 2]
    error = second.exception(timeout=TIMEOUT)
    assert isinstance(error, ValueError) and str(error) in {"bad 1", "bad 2"}


@pytest.mark.parametrize(
    "order",
    [[1, 3, 0, 2], [0, 1, 2, 3], [3, 2, 1, 0]],
    ids=["failures-first", "interleaved", "successes-last"],
)
def test_batched_failure_semantics_in_any_completion_order(executor_factory, order):
    exe = executor_factory()
    inputs = [Future() for _ in range(4)]
    first, second = exe.batched(inputs, n=2)
    for index in order:
        if index % 2:
            inputs[index].set_exception(ValueError(f"bad {index}"))
        else:
            inputs[index].set_result(index)
    assert sorted(first.result(timeout=TIMEOUT)) == [0, 2]
    error = second.exception(timeout=TIMEOUT)
    assert isinstance(error, ValueError) and str(error) in {"bad 1", "bad 3"}


def test_batched_one_failure_leaves_a_shorter_last_batch(executor_factory):
    exe = executor_factory()
    inputs = [Future() for _ in range(4)]
    batches = exe.batched(inputs, n=2)
    inputs[0].set_result(0)
    inputs[1].set_exception(ValueError("bad"))
    inputs[2].set_result(2)
    inputs[3].set_result(3)
    assert results(batches) == [[0, 2], [3]]


# --- disable_dependencies ---------------------------------------------------------------------------------------


def test_disable_dependencies_rejects_future_arguments(executor_factory):
    exe = executor_factory(disable_dependencies=True)
    future = exe.submit(identity, 1)
    assert future.result(timeout=TIMEOUT) == 1
    for args, kwargs in (((future,), {}), (([future],), {}), ((), {"x": {"k": future}})):
        with pytest.raises(ValueError, match="disable_dependencies"):
            exe.submit(identity, *args, **kwargs)
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3


# --- shutdown ---------------------------------------------------------------------------------------------------


def _waiting_dependents(exe, upstream):
    chain = exe.submit(add, upstream, 1)
    chain = exe.submit(add, chain, 1)
    return [*(exe.submit(add, upstream, i) for i in range(4)), exe.submit(pack, [upstream]), chain]


def _expected(value):
    return [*(value + i for i in range(4)), (([value],), {}), value + 2]


def test_shutdown_wait_runs_tasks_still_waiting_for_a_running_upstream(executor_factory, gate):
    exe = executor_factory()
    upstream = exe.submit(block_until_released, 10, *gate.args("up"))
    dependents = _waiting_dependents(exe, upstream)
    gate.wait_started("up")
    gate.release_later(0.3)
    shutdown(exe, wait=True)
    assert all(f.done() for f in dependents), "shutdown(wait=True) returned before the dependents ran"
    assert results(dependents, timeout=0) == _expected(10)
    with pytest.raises(RuntimeError):
        exe.submit(identity, 1)


def test_shutdown_without_wait_returns_promptly_and_dependents_complete(executor_factory, gate):
    exe = executor_factory()
    upstream = exe.submit(block_until_released, 10, *gate.args("up"))
    dependents = _waiting_dependents(exe, upstream)
    gate.wait_started("up")
    start = time.monotonic()
    shutdown(exe, wait=False)
    assert time.monotonic() - start < 2.0
    assert not any(f.done() for f in dependents)
    with pytest.raises(RuntimeError):
        exe.submit(identity, 1)
    gate.release()
    assert results(dependents) == _expected(10)


def test_shutdown_without_wait_then_an_outside_upstream_completes(executor_factory):
    exe = executor_factory()
    outside = Future()
    dependents = [exe.submit(add, outside, i) for i in range(3)]
    shutdown(exe, wait=False)
    complete_from_thread(outside, 10)
    assert results(dependents) == [10, 11, 12]


@pytest.mark.parametrize("wait_", [True, False], ids=["wait", "no-wait"])
def test_shutdown_cancel_futures_cancels_waiting_dependents(executor_factory, gate, tmp_path, wait_):
    exe = executor_factory()
    upstream = exe.submit(block_until_released, 10, *gate.args("up"))
    marker = tmp_path / "ran"
    dependent = exe.submit(touch_and_return, str(marker), upstream)
    downstream = exe.submit(add, dependent, 1)
    gate.wait_started("up")
    if wait_:
        gate.release_later(0.3)
    shutdown(exe, wait=wait_, cancel_futures=True)
    assert dependent.cancelled() and downstream.cancelled()
    gate.release()
    assert upstream.result(timeout=TIMEOUT) == 10  # already running: not cancelled
    shutdown(exe, wait=True)
    assert not marker.exists()


# --- graph mode -------------------------------------------------------------------------------------------------


def _record_workflow(exe, marker):
    """Five tasks: a split, a selection by key, a list argument with Futures inside."""
    from executorlib import get_item_from_future, split_future

    pair = exe.submit(divmod, 17, 5)
    quotient, remainder = split_future(pair, n=2)
    total = exe.submit(add, quotient, b=remainder)
    record = exe.submit(dict, a=total)
    last = exe.submit(touch_and_return, str(marker), [get_item_from_future(record, "a"), 1])
    return [pair, total, record, last]


def _shutdown_writing_picture(exe):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            shutdown(exe, wait=True)
    except ImportError as exc:
        pytest.skip(str(exc))


def test_plot_dependency_graph_runs_nothing_and_resolves_to_none(make_executor, tmp_path):
    from executorlib import split_future

    exe = make_executor(plot_dependency_graph=True)
    marker = tmp_path / "ran"
    futures = _record_workflow(exe, marker)
    first, second = split_future(futures[0], n=2)
    futures += [first, second, exe.submit(touch_and_add, str(marker), first, second)]
    assert all(f.done() for f in futures)
    assert [f.result(timeout=0) for f in futures] == [None] * len(futures)
    _shutdown_writing_picture(exe)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_plot_dependency_graph_filename_writes_a_picture(make_executor, tmp_path, suffix):
    picture = tmp_path / f"wf.{suffix}"
    marker = tmp_path / "ran"
    exe = make_executor(plot_dependency_graph_filename=str(picture))
    futures = _record_workflow(exe, marker)
    assert [f.result(timeout=0) for f in futures] == [None] * 4
    assert not picture.exists()  # written on exit
    _shutdown_writing_picture(exe)
    assert not marker.exists()
    data = picture.read_bytes()
    if suffix == "png":
        assert data.startswith(b"\x89PNG")
    else:
        task_ids = set(re.findall(r'id="(task_\d+)"', data.decode("utf-8")))
        assert task_ids == {f"task_{i}" for i in range(4)}


def test_export_workflow_filename_writes_python_workflow_definition(make_executor, tmp_path):
    target = tmp_path / "wf.json"
    marker = tmp_path / "ran"
    exe = make_executor(export_workflow_filename=str(target))
    _record_workflow(exe, marker)
    shutdown(exe, wait=True)
    assert not marker.exists()
    workflow = json.loads(target.read_text())
    assert isinstance(workflow["nodes"], list) and isinstance(workflow["edges"], list)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert len(nodes) == len(workflow["nodes"])
    assert all(node["type"] in {"function", "input", "output"} for node in nodes.values())
    functions = sorted(node["value"] for node in nodes.values() if node["type"] == "function")
    assert functions == sorted(
        [
            "builtins.divmod",
            "xl_test_helpers.add",
            "builtins.dict",
            "xl_test_helpers.touch_and_return",
            "python_workflow_definition.shared.get_list",
        ]
    )
    for edge in workflow["edges"]:
        assert set(edge) == {"source", "sourcePort", "target", "targetPort"}
        assert edge["source"] in nodes and edge["target"] in nodes
    by_value = {node["value"]: node["id"] for node in nodes.values() if node["type"] == "function"}
    from_divmod = [e for e in workflow["edges"] if e["source"] == by_value["builtins.divmod"]]
    assert sorted((str(e["sourcePort"]), e["targetPort"]) for e in from_divmod) == [("0", "a"), ("1", "b")]
    assert all(e["target"] == by_value["xl_test_helpers.add"] for e in from_divmod)
    from_dict = [e for e in workflow["edges"] if e["source"] == by_value["builtins.dict"]]
    assert [e["sourcePort"] for e in from_dict] == ["a"]
    inputs = {(node["name"], node["value"]) for node in nodes.values() if node["type"] == "input"}
    assert {("0", 17), ("1", 5)} <= inputs or {("a", 17), ("b", 5)} <= inputs or {("x", 17), ("y", 5)} <= inputs


# --- map over a Future ------------------------------------------------------------------------------------------


def test_map_over_an_iterable_that_is_a_future(executor_factory):
    exe = executor_factory()
    numbers = exe.submit(list, range(6))
    assert list(exe.map(square, numbers, timeout=TIMEOUT)) == [i * i for i in range(6)]
    offsets = exe.submit(list, range(10, 16))
    assert list(exe.map(add, numbers, offsets, timeout=TIMEOUT)) == [i + i + 10 for i in range(6)]
    # Futures as the elements of a plain iterable are arguments like any other
    elements = [exe.submit(identity, i) for i in range(3)]
    assert list(exe.map(times_two, elements, timeout=TIMEOUT)) == [0, 2, 4]


# --- interpreter exit -------------------------------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import atexit
    import sys

    from executorlib import SingleNodeExecutor
    from xl_test_helpers import sleep_and_return, touch_and_return

    block, marker = sys.argv[1] == "block", sys.argv[2]
    dependents = []
    # registered before the executor exists, so it runs after the executor's exit handling (atexit is LIFO)
    atexit.register(lambda: print("dependents:", [repr(f.exception(timeout=0)) for f in dependents], flush=True))
    exe = SingleNodeExecutor(max_workers=2, block_allocation=block)
    upstream = exe.submit(sleep_and_return, 1, 0.5)
    first = exe.submit(touch_and_return, marker + ".first", upstream)
    dependents += [first, exe.submit(touch_and_return, marker, first)]
    # no shutdown: at exit the waiting tasks must be released and run before the workers stop
    """
)


def test_tasks_waiting_for_arguments_run_at_interpreter_exit(executor_factory, tmp_path):
    script = tmp_path / "exit_without_shutdown.py"
    script.write_text(EXIT_SCRIPT)
    marker = tmp_path / "ran"
    helpers = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, str(script), executor_factory.kind, str(marker)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": helpers},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "dependents: ['None', 'None']", proc.stderr
    assert Path(f"{marker}.first").exists() and marker.exists()

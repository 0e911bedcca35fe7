"""A state machine for tasks parked on Future arguments (executorlib.dependencies through BaseExecutor).

Upstream Futures are made and completed, failed or cancelled by the test; dispatched tasks go to a recording
scheduler, which the test runs. Invariants: a dependent is dispatched only once all its upstreams succeeded; it
fails (or is cancelled) once one of them failed (or was cancelled); no done-callback raises; at the end, with
every upstream done and every dispatched task run, nothing is pending or parked.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest
from executorlib.executors.base import BaseExecutor
from executorlib.executors.single import SINGLE_NODE_RULES
from executorlib.resources import DEFAULTS
from executorlib.schedulers.workers import ExitHook
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule


def combine(*values: Any) -> tuple[Any, ...]:
    """Never runs: the test completes dispatched tasks itself."""
    return values


@dataclass(frozen=True)
class Submitted:
    """One call the executor handed to the scheduler."""

    fn: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any]


class RecordingScheduler:
    """The Scheduler protocol; remembers what it was given."""

    hub_ref = None
    handles_dependencies = False  # the executor parks calls with Future arguments: that is what is tested

    def __init__(self) -> None:
        self.items: list[Submitted] = []
        self.shutdowns: list[tuple[bool, bool]] = []

    def submit(self, fn: Any, args: Any, kwargs: Any, resources: Any, extras: Any, future: Future[Any]) -> None:
        self.items.append(Submitted(fn, args, kwargs, future))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shutdowns.append((wait, cancel_futures))

    @property
    def queued(self) -> int:
        return 0

    def pending(self) -> list[Future[Any]]:
        return []

    def info(self) -> dict[str, Any]:
        return {}


@dataclass(eq=False)
class Dependent:
    future: Future[Any]
    upstream: list[Future[Any]]
    dispatched: bool = False
    ran: bool = False
    cancel_asked: bool = field(default=False)


class CallbackErrors(logging.Handler):
    """concurrent.futures logs a done-callback that raised, and a Future in an unexpected state."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def succeeded(future: Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def failed(future: Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


class DependencyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.scheduler = RecordingScheduler()
        self.exe = BaseExecutor(self.scheduler, resources=DEFAULTS, rules=SINGLE_NODE_RULES, fixed_resources=False)
        self.upstreams: list[Future[Any]] = []
        self.dependents: dict[int, Dependent] = {}
        self.shut_down = False
        self.errors = CallbackErrors()
        logging.getLogger("concurrent.futures").addHandler(self.errors)
        submit = self.scheduler.submit

        def checked_submit(*call: Any) -> None:
            node = self.dependents.get(id(call[-1]))  # the call's Future
            if node is not None:  # None: dispatched inside exe.submit, before it returned (all upstreams done)
                self._check_dispatch(node)
                node.dispatched = True
            submit(*call)

        self.scheduler.submit = checked_submit  # type: ignore[method-assign]

    def _check_dispatch(self, node: Dependent) -> None:
        assert all(succeeded(f) for f in node.upstream), "dispatched before every upstream succeeded"
        assert not node.dispatched, "dispatched twice"

    def _pool(self) -> list[Future[Any]]:
        return [*self.upstreams, *(node.future for node in self.dependents.values())]

    # -- rules -----------------------------------------------------------------------------------------------------

    @rule()
    def new_upstream(self) -> None:
        self.upstreams.append(Future())

    @precondition(lambda self: self.upstreams)
    @rule(data=st.data())
    def submit_dependent(self, data: st.DataObject) -> None:
        pool = self._pool()
        picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=3), label="upstream")
        upstream = [pool[i] for i in picks]
        args: list[Any] = [upstream[0], {"nested": upstream[1:]}]
        if self.shut_down:
            with pytest.raises(RuntimeError, match="after shutdown"):
                self.exe.submit(combine, *args)
            return
        dispatched_before = len(self.scheduler.items)
        future = self.exe.submit(combine, *args)
        node = Dependent(future, list(dict.fromkeys(upstream)))
        if len(self.scheduler.items) > dispatched_before:  # every upstream was done already
            assert self.scheduler.items[-1].future is future
            self._check_dispatch(node)
            node.dispatched = True
        self.dependents[id(future)] = node

    @precondition(lambda self: any(not f.done() for f in self.upstreams))
    @rule(data=st.data(), how=st.sampled_from(["result", "exception", "cancel"]))
    def finish_upstream(self, data: st.DataObject, how: str) -> None:
        future = data.draw(st.sampled_from([f for f in self.upstreams if not f.done()]), label="upstream")
        if how == "result":
            future.set_result(len(self.upstreams))
        elif how == "exception":
            future.set_exception(KeyError("upstream failed"))
        else:
            assert future.cancel()

    @precondition(lambda self: any(not item.future.done() for item in self.scheduler.items))
    @rule(data=st.data(), ok=st.booleans())
    def run_dispatched(self, data: st.DataObject, ok: bool) -> None:
        item = data.draw(st.sampled_from([i for i in self.scheduler.items if not i.future.done()]), label="task")
        self._run(item, ok)

    def _run(self, item: Submitted, ok: bool) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        node = self.dependents.get(id(item.future))
        if node is not None:
            node.ran = True
        if ok:
            item.future.set_result("done")
        else:
            item.future.set_exception(ValueError("task failed"))

    @precondition(lambda self: self.dependents)
    @rule(data=st.data())
    def cancel_dependent(self, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from(list(self.dependents.values())), label="dependent")
        if node.future.cancel():
            node.cancel_asked = True

    @rule(cancel_futures=st.booleans())
    def shutdown(self, cancel_futures: bool) -> None:
        self.exe.shutdown(wait=False, cancel_futures=cancel_futures)
        self.shut_down = True

    # -- invariants ------------------------------------------------------------------------------------------------

    @invariant()
    def no_callback_raised(self) -> None:
        assert not self.errors.records, self.errors.records

    @invariant()
    def dependents_follow_their_upstreams(self) -> None:
        for node in self.dependents.values():
            if any(failed(f) for f in node.upstream):
                assert failed(node.future), "an upstream failed but its dependent did not"
                assert not node.ran, "ran although an upstream failed"
                if not node.cancel_asked and not node.dispatched:
                    broken = [f for f in node.upstream if failed(f)]
                    if all(f.cancelled() for f in broken):
                        assert node.future.cancelled(), "a cancelled upstream should cancel its dependent"
            elif all(succeeded(f) for f in node.upstream):
                assert node.dispatched or node.future.cancelled(), "every upstream succeeded, yet it waits"
            else:
                assert not node.dispatched

    @invariant()
    def cancelled_dependents_are_released(self) -> None:
        parked = {id(p.future) for p in self.exe._parked}
        for node in self.dependents.values():
            if node.future.cancelled():
                assert id(node.future) not in parked, "a cancelled dependent is still parked"

    # -- the end ---------------------------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            for future in self.upstreams:
                if not future.done():
                    future.set_result(0)
            while any(not item.future.done() for item in self.scheduler.items):
                for item in list(self.scheduler.items):
                    if not item.future.done():
                        self._run(item, True)
            self.no_callback_raised()
            self.dependents_follow_their_upstreams()
            pending = [node for node in self.dependents.values() if not node.future.done()]
            assert not pending, f"{len(pending)} dependents pending with every upstream done"
            assert not self.exe._parked, "tasks still parked with every upstream done"
            self.exe.shutdown(wait=False)
            assert self.scheduler.shutdowns, "the scheduler was never shut down"
        finally:
            logging.getLogger("concurrent.futures").removeHandler(self.errors)
            ExitHook._executors.discard(self.exe)


DEPENDENCY_SETTINGS = settings(
    max_examples=200, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

TestDependencies = DependencyMachine.TestCase
TestDependencies.settings = DEPENDENCY_SETTINGS


@pytest.mark.timeout(30)
def test_a_cancelled_dependent_is_released_at_once() -> None:
    exe = BaseExecutor(RecordingScheduler(), resources=DEFAULTS, rules=SINGLE_NODE_RULES, fixed_resources=False)
    try:
        upstream: Future[Any] = Future()
        dependent = exe.submit(combine, upstream)
        assert dependent.cancel()
        assert not exe._parked, "the cancelled dependent is still parked"
    finally:
        upstream.set_result(0)
        exe.shutdown(wait=False)
        ExitHook._executors.discard(exe)


@pytest.mark.timeout(30)
def test_a_dependent_cancelled_by_shutdown_is_notified_once(caplog: pytest.LogCaptureFixture) -> None:
    exe = BaseExecutor(RecordingScheduler(), resources=DEFAULTS, rules=SINGLE_NODE_RULES, fixed_resources=False)
    try:
        upstream: Future[Any] = Future()
        dependent = exe.submit(combine, upstream)
        exe.shutdown(wait=False, cancel_futures=True)
        assert dependent.cancelled()
        with caplog.at_level(logging.DEBUG, logger="concurrent.futures"):
            upstream.set_result(0)
        assert not [r.getMessage() for r in caplog.records], "a cancelled dependent was notified twice"
    finally:
        ExitHook._executors.discard(exe)

"""Futures as arguments: a task waits for the Futures it was given, released by their done-callbacks.

Nothing polls. Each upstream Future gets one callback per waiting task, and each callback does O(1) work
(one set removal), so the cost of an edge does not grow with the number of waiting tasks. A waiting task also
watches its own Future: cancelling it releases the task at once, even if an upstream never completes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED
from typing import Any

from xl_graph import find_futures, substitute

_flat = threading.local()


def run_flat(step: Callable[[], None]) -> None:
    """Run ``step`` now, or after the step this thread is already running.

    Completing a Future runs its done-callbacks, which complete the dependents' Futures, which run theirs: a
    failure or cancellation spreading down a chain of 500 waiting tasks would nest 500 levels deep, and past
    Python's recursion limit the stdlib swallows the RecursionError and leaves the rest pending forever. A
    per-thread queue keeps the depth constant.
    """
    queue: deque[Callable[[], None]] | None = getattr(_flat, "queue", None)
    if queue is not None:
        queue.append(step)
        return
    queue = _flat.queue = deque([step])
    try:
        while queue:
            queue.popleft()()
    finally:
        _flat.queue = None


def cancel_and_notify(future: Future[Any]) -> None:
    """Cancel a Future that will never be dispatched, and tell ``concurrent.futures.wait`` so: ``cancel()``
    alone leaves it in a state that ``wait`` and ``as_completed`` do not count as done.

    Safe to call twice, from two threads: only the first notifies (a second ``set_running_or_notify_cancel``
    would log "Future ... in unexpected state" at CRITICAL level)."""
    if future.cancel():
        with future._condition:  # the Future's own lock: the check and the notify are one step
            if future._state == CANCELLED:
                future.set_running_or_notify_cancel()


def start_unless_cancelled(future: Future[Any]) -> bool:
    """``set_running_or_notify_cancel()`` that also accepts a Future already cancelled and notified (by
    :func:`cancel_and_notify` on another thread): False then, without the stdlib's CRITICAL log line."""
    with future._condition:
        if future._state == CANCELLED_AND_NOTIFIED:
            return False
        return future.set_running_or_notify_cancel()


class Parked:
    """One task waiting for its upstream Futures; ``release`` runs once: when the last of them is done, when one
    fails, or when the task's own Future is cancelled (then with a CancelledError, whatever the upstream do).

    With ``substitute`` (the default) ``release`` gets the arguments with the upstream results in place;
    without, it gets them as given (a scheduler that links Futures itself)."""

    __slots__ = ("_lock", "_release", "_substitute", "_upstream", "_waiting", "args", "future", "kwargs")

    # Every slot, set and closure here is paid per pending task (the benchmark's 50,000 tasks on one Future):
    # hence no set for the common single upstream, and no closure per task in the callers (see ParkedCall).

    def __init__(
        self,
        future: Future[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        upstream: list[Future[Any]],
        release: Callable[[Parked, tuple[Any, ...] | None, dict[str, Any] | None, BaseException | None], None],
        *,
        substitute: bool = True,
    ) -> None:
        self.future = future
        self.args = args
        self.kwargs = kwargs
        self._upstream: list[Future[Any]] | None = upstream
        # Which upstream Futures are still awaited: a set, not a count, so that settling one twice is harmless.
        # With a single upstream, `_upstream` going to None on release already makes a second settle a no-op.
        self._waiting = {id(f) for f in upstream} if len(upstream) > 1 else None
        self._release = release
        self._substitute = substitute
        self._lock = threading.Lock()

    def start(self) -> None:
        assert self._upstream is not None
        for upstream in self._upstream:
            upstream.add_done_callback(self._one_done)
        self.future.add_done_callback(self._own_done)

    def catch_up(self) -> None:
        """Settle the upstream Futures that are done but whose callbacks have not reached this task yet: the
        caller may be an earlier done-callback of one of them (which shutdown() then waits in)."""
        with self._lock:
            upstream = list(self._upstream or ())
        for each in upstream:
            if each.done():
                self._one_done(each)

    def _one_done(self, upstream: Future[Any]) -> None:
        run_flat(lambda: self._settle(upstream))

    def _own_done(self, future: Future[Any]) -> None:
        if not future.cancelled():  # completed by the release itself
            return
        with self._lock:
            if self._upstream is None:
                return
            self._upstream = None
        self._finish(None, None, CancelledError())

    def _settle(self, upstream: Future[Any]) -> None:
        with self._lock:
            if self._upstream is None:  # already released (an earlier upstream failed, or it was cancelled)
                return
            if self._waiting is not None:
                if id(upstream) not in self._waiting:  # settled already (catch_up)
                    return
                self._waiting.discard(id(upstream))
            failed = upstream.cancelled() or upstream.exception() is not None
            if not failed and self._waiting:
                return
            pending, self._upstream = self._upstream, None
        if failed:
            error: BaseException = CancelledError() if upstream.cancelled() else upstream.exception()  # type: ignore[assignment]
            self._finish(None, None, error)
            return
        if not self._substitute:
            self._finish(self.args, self.kwargs, None)
            return
        results = {id(f): f.result() for f in pending}
        try:
            args, kwargs = substitute((self.args, self.kwargs), results)
        except Exception as problem:
            self._finish(None, None, problem)
            return
        self._finish(args, kwargs, None)

    def _finish(self, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None, error: BaseException | None) -> None:
        try:
            self._release(self, args, kwargs, error)
        finally:
            # an upstream that never completes still holds this task through its callback: let the arguments go
            self.args, self.kwargs = (), {}


def upstream_futures(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Future[Any]]:
    """Every Future in the call's arguments (nested in list, tuple, dict or set), each once."""
    if not kwargs:
        for arg in args:
            if type(arg) not in _LEAVES:
                break
        else:  # the common call on plain values: no walk
            return []
    return find_futures((args, kwargs))


#: Exact types that can neither be nor contain a Future.
_LEAVES = frozenset({int, float, complex, str, bytes, bool, type(None)})


class Batches:
    """``batched(futures, n)``: results in completion order, ``n`` per batch (the last may be shorter).

    A batch fails only when every input that could still fill it has failed (upstream semantics).
    """

    def __init__(self, futures: Iterable[Future[Any]], n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"batched() needs a batch size n >= 1, got {n!r}")
        inputs = list(futures)
        for item in inputs:
            if not isinstance(item, Future):
                raise TypeError(f"batched() takes a list of Futures, got {type(item).__name__} {item!r}")
        self.batches: list[Future[Any]] = [Future() for _ in range(-(-len(inputs) // n))]
        self._n = n
        self._lock = threading.Lock()
        self._buffer: list[Any] = []
        self._next = 0
        self._remaining = len(inputs)
        self._last_error: BaseException | None = None
        for item in inputs:
            item.add_done_callback(self._one_done)

    def _one_done(self, item: Future[Any]) -> None:
        completed: list[tuple[Future[Any], list[Any]]] = []
        failed: list[Future[Any]] = []
        with self._lock:
            self._remaining -= 1
            if item.cancelled():
                self._last_error = self._last_error or CancelledError()
            elif item.exception() is not None:
                self._last_error = item.exception()
            else:
                self._buffer.append(item.result())
            if len(self._buffer) == self._n or (self._remaining == 0 and self._buffer):
                completed.append((self.batches[self._next], self._buffer))
                self._next, self._buffer = self._next + 1, []
            if self._remaining == 0:
                failed, self._next = self.batches[self._next :], len(self.batches)
        for batch, values in completed:
            batch.set_result(values)
        for batch in failed:
            batch.set_exception(self._last_error or CancelledError())

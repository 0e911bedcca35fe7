"""Futures as arguments: a task waits for the Futures it was given, released by their done-callbacks.

Nothing polls. Each upstream Future gets one callback per waiting task, and each callback does O(1) work
(a counter decrement), so the cost of an edge does not grow with the number of waiting tasks.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future
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
    alone leaves it in a state that ``wait`` and ``as_completed`` do not count as done."""
    if future.cancel():
        with contextlib.suppress(RuntimeError):  # already notified
            future.set_running_or_notify_cancel()


class Parked:
    """One task waiting for its upstream Futures; ``release`` runs once, when the last of them is done."""

    __slots__ = ("_lock", "_release", "_remaining", "_upstream", "args", "future", "kwargs")

    def __init__(
        self,
        future: Future[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        upstream: list[Future[Any]],
        release: Callable[[Parked, tuple[Any, ...] | None, dict[str, Any] | None, BaseException | None], None],
    ) -> None:
        self.future = future
        self.args = args
        self.kwargs = kwargs
        self._upstream: list[Future[Any]] | None = upstream
        self._remaining = len(upstream)
        self._release = release
        self._lock = threading.Lock()

    def start(self) -> None:
        assert self._upstream is not None
        for upstream in self._upstream:
            upstream.add_done_callback(self._one_done)

    def _one_done(self, upstream: Future[Any]) -> None:
        run_flat(lambda: self._settle(upstream))

    def _settle(self, upstream: Future[Any]) -> None:
        with self._lock:
            if self._upstream is None:  # already released (an earlier upstream failed)
                return
            self._remaining -= 1
            failed = upstream.cancelled() or upstream.exception() is not None
            if not failed and self._remaining:
                return
            pending, self._upstream = self._upstream, None
        if failed:
            error: BaseException = CancelledError() if upstream.cancelled() else upstream.exception()  # type: ignore[assignment]
            self._release(self, None, None, error)
            return
        results = {id(f): f.result() for f in pending}
        try:
            args, kwargs = substitute((self.args, self.kwargs), results)
        except Exception as problem:
            self._release(self, None, None, problem)
            return
        self._release(self, args, kwargs, None)


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

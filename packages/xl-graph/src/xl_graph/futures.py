"""Futures inside arguments: select a part of a result, find futures in nested containers, substitute results.

Pure and cheap: this module imports only the standard library, because the dependency scheduler calls
:func:`find_futures` and :func:`substitute` for every submitted task.

The containers looked into are ``list``, ``tuple`` (named tuples included), ``dict`` (its values), ``set`` and
``frozenset``, and their subclasses. Anything else, strings and bytes included, is a leaf: a Future stored as an
attribute of some object is not found.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any, TypeVar

__all__ = ["FutureSelector", "find_futures", "get_item_from_future", "has_futures", "split_future", "substitute"]

T = TypeVar("T")

_CONTAINERS = (list, tuple, dict, set, frozenset)


class FutureSelector(Future[Any]):
    """A Future for ``future.result()[selector]``.

    It is a real :class:`concurrent.futures.Future` that completes itself from the wrapped Future through a done
    callback, so it works with ``wait``, ``as_completed`` and ``add_done_callback`` and can be passed to a later
    ``submit``. When the wrapped Future finishes:

    - with a result: this Future's result is ``result[selector]``. If the indexing raises, this Future fails with
      an exception of the same type whose message names the selector. A result of ``None`` selects ``None``
      (executorlib 1.x behaviour, which graph mode relies on: there every Future resolves to ``None``);
    - with an exception: this Future fails with the same exception;
    - cancelled: this Future is cancelled too (and its waiters are woken). If it cannot be cancelled any more
      because somebody marked it running, it fails with :class:`concurrent.futures.CancelledError`.

    Cancelling a selector cancels only the selector, not the wrapped Future (other selectors of the same Future
    stay valid).
    """

    def __init__(self, future: Future[Any], selector: int | str) -> None:
        if not isinstance(future, Future):
            raise TypeError(
                f"FutureSelector needs a concurrent.futures.Future to select from, got {type(future).__name__}: "
                f"{future!r}"
            )
        if isinstance(selector, bool) or not isinstance(selector, (int, str)):
            raise TypeError(
                f"FutureSelector selector must be an int index or a str key, got {type(selector).__name__}: "
                f"{selector!r}"
            )
        super().__init__()
        self.future: Future[Any] = future
        self.selector: int | str = selector
        # Runs at once (in this thread) when ``future`` is already done, so the selector is never left pending.
        future.add_done_callback(self._complete_from)

    def _complete_from(self, future: Future[Any]) -> None:
        if self.done():  # cancelled by its user before the wrapped Future finished
            return
        try:
            if future.cancelled():
                if self.cancel():
                    self.set_running_or_notify_cancel()  # wakes wait()/as_completed() waiters
                else:
                    self.set_exception(
                        CancelledError(f"the Future selected from with [{self.selector!r}] was cancelled")
                    )
                return
            error = future.exception()
            if error is not None:
                self.set_exception(error)
                return
            result = future.result()
            if result is None:
                self.set_result(None)
                return
            try:
                value = result[self.selector]
            except Exception as exc:
                self.set_exception(_name_selector(exc, self.selector, result))
                return
            self.set_result(value)
        except InvalidStateError:  # lost a race with a cancel() of this selector
            pass

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} selector={self.selector!r}>"


def _name_selector(exc: Exception, selector: int | str, result: object) -> Exception:
    """The indexing error again, of the same type when possible, with a message that names the selector."""
    message = f"selecting [{selector!r}] from the result of type {type(result).__name__} failed: {exc}"
    try:
        named = type(exc)(message)
    except Exception:
        named = exc
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(message)
    if named is not exc:
        named.__cause__ = exc
    return named


def split_future(future: Future[Any], n: int) -> list[FutureSelector]:
    """``n`` Futures for ``future.result()[0]``, ..., ``future.result()[n - 1]``."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"split_future: n must be an int, got {type(n).__name__}: {n!r}")
    if n < 1:
        raise ValueError(f"split_future: n must be at least 1 (the number of parts to select), got n={n}")
    return [FutureSelector(future, i) for i in range(n)]


def get_item_from_future(future: Future[Any], key: int | str) -> FutureSelector:
    """A Future for ``future.result()[key]``."""
    return FutureSelector(future, key)


def _children(obj: Any) -> Iterable[Any] | None:
    """The items to look into, or ``None`` for a leaf."""
    if isinstance(obj, dict):
        return obj.values()
    if isinstance(obj, _CONTAINERS):
        return obj
    return None


def _iter_futures(obj: Any) -> Iterator[Future[Any]]:
    """Every Future in ``obj``, depth first in order of appearance (repeats included); each container is looked
    into once, so a container that contains itself ends the walk instead of looping."""
    if isinstance(obj, Future):
        yield obj
        return
    children = _children(obj)
    if children is None:
        return
    visited = {id(obj)}
    stack: list[Iterator[Any]] = [iter(children)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, Future):
                yield item
                continue
            inner = _children(item)
            if inner is not None and id(item) not in visited:
                visited.add(id(item))
                stack.append(iter(inner))
                break
        else:
            stack.pop()


def find_futures(obj: Any) -> list[Future[Any]]:
    """Every Future inside ``obj`` (itself included), each distinct object once, in order of first appearance."""
    seen: set[int] = set()
    found: list[Future[Any]] = []
    for future in _iter_futures(obj):
        if id(future) not in seen:
            seen.add(id(future))
            found.append(future)
    return found


def has_futures(obj: Any) -> bool:
    """Whether ``obj`` is or contains a Future; stops at the first one."""
    return next(_iter_futures(obj), None) is not None


def substitute(obj: T, results: Mapping[int, Any]) -> T:
    """A copy of ``obj`` with every Future ``f`` replaced by ``results[id(f)]``.

    Container types are kept: lists, tuples, named tuples (rebuilt with ``type(obj)._make``), dicts and dict
    subclasses (a shallow copy with the changed values set, so e.g. a defaultdict keeps its factory), sets and
    frozensets. A container without Futures is returned as the same object, not copied; so is ``obj`` itself.
    A Future missing from ``results`` raises ``KeyError`` naming it.
    """
    result: T = _substitute(obj, results, {})
    return result


def _substitute(obj: Any, results: Mapping[int, Any], memo: dict[int, Any]) -> Any:
    if isinstance(obj, Future):
        try:
            return results[id(obj)]
        except KeyError:
            raise KeyError(f"substitute: no result given for {obj!r} (id {id(obj)})") from None
    if not isinstance(obj, _CONTAINERS):
        return obj
    key = id(obj)
    if key in memo:  # shared sub-structure is substituted once; a cycle refers back to the original
        return memo[key]
    memo[key] = obj
    new: Any
    if isinstance(obj, dict):
        changed = {}
        for k, v in obj.items():
            w = _substitute(v, results, memo)
            if w is not v:
                changed[k] = w
        if not changed:
            new = obj
        elif type(obj) is dict:
            new = {k: changed.get(k, v) for k, v in obj.items()}
        else:
            new = _copy_dict(obj, changed)
    else:
        items = [_substitute(item, results, memo) for item in obj]
        new = obj if all(a is b for a, b in zip(items, obj, strict=True)) else _rebuild(obj, items)
    memo[key] = new
    return new


def _copy_dict(obj: dict[Any, Any], changed: dict[Any, Any]) -> dict[Any, Any]:
    try:
        new: dict[Any, Any] = copy.copy(obj)
        for k, v in changed.items():
            dict.__setitem__(new, k, v)
        return new
    except Exception:
        return {k: changed.get(k, v) for k, v in obj.items()}


def _rebuild(obj: Any, items: list[Any]) -> Any:
    kind = type(obj)
    if kind in (list, tuple, set, frozenset):
        return kind(items)
    if isinstance(obj, tuple) and hasattr(kind, "_make") and hasattr(obj, "_fields"):
        return kind._make(items)
    base = next(b for b in (list, tuple, set, frozenset) if isinstance(obj, b))
    try:
        rebuilt = kind(items)
        if isinstance(rebuilt, base) and len(rebuilt) == len(obj):
            return rebuilt
    except Exception:
        pass
    return base(items)

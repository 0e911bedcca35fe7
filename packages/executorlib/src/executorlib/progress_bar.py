"""``executorlib.progress(futures)``: a progress bar over a batch of Futures.

With ``tqdm`` installed the bar is tqdm's (``tqdm.auto``: its widget in Jupyter, text in a terminal); without it, a
plain one-line bar on stderr. tqdm is never required. The bar advances in the thread that iterates, as each
Future completes (``concurrent.futures.as_completed``): nothing polls, and no callback runs on the executor's
threads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, as_completed
from typing import Any, Protocol, TextIO

__all__ = ["PlainBar", "bar_line", "progress"]

#: Characters of the plain bar between its brackets.
PLAIN_WIDTH = 30


class _Bar(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> Any: ...

    def close(self) -> None: ...


def bar_line(done: int, total: int, *, desc: str | None = None, postfix: str = "", width: int = PLAIN_WIDTH) -> str:
    """The plain bar's text (pure): ``desc: [#########.....] 3/10, 1 failed``.

    >>> bar_line(5, 10, desc="fit", width=10)
    'fit: [#####.....] 5/10'
    """
    if not 0 <= done <= total or width < 1:
        raise ValueError(
            f"bar_line needs 0 <= done <= total and width >= 1, got done={done}, total={total}, width={width}"
        )
    filled = width if total == 0 else done * width // total
    text = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    if postfix:
        text += f", {postfix}"
    return f"{desc}: {text}" if desc else text


class PlainBar:
    """The bar without tqdm: one line on ``file``, redrawn in place (``\\r``) as Futures complete, ended with a
    newline on ``close``."""

    def __init__(self, total: int, desc: str | None, file: TextIO | None) -> None:
        self._total = total
        self._desc = desc
        self._file = file if file is not None else sys.stderr
        self._done = 0
        self._postfix = ""
        self._draw()

    def update(self, n: int = 1) -> None:
        self._done += n
        self._draw()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s
        if refresh:
            self._draw()

    def close(self) -> None:
        self._file.write("\n")
        self._file.flush()

    def _draw(self) -> None:
        self._file.write("\r" + bar_line(self._done, self._total, desc=self._desc, postfix=self._postfix))
        self._file.flush()


def _make_bar(total: int, desc: str | None, file: TextIO | None) -> _Bar:
    try:
        auto = importlib.import_module("tqdm.auto")  # tqdm's notebook widget in Jupyter, its text bar elsewhere
    except ImportError:
        return PlainBar(total, desc, file)
    bar: _Bar = auto.tqdm(total=total, desc=desc, file=file, unit="task")
    return bar


def progress(
    futures: Iterable[Future[Any]], *, desc: str | None = None, file: TextIO | None = None
) -> Iterator[Future[Any]]:
    """Yield ``futures`` as they complete, with a progress bar that counts them (and the failed ones).

    ``for future in progress(futures): ...`` handles results as they come; ``list(progress(futures))`` just waits
    for all with the bar. ``desc`` labels the bar; ``file`` is where it is drawn (default: stderr; tqdm's
    notebook widget ignores it). Duplicates count once, as in ``as_completed``.
    """
    unique = list(dict.fromkeys(futures))
    for future in unique:
        if not isinstance(future, Future):
            raise TypeError(
                f"progress() takes Futures (what submit() returns), got {type(future).__name__} {future!r}; pass "
                "the list of Futures, e.g. progress([exe.submit(f, x) for x in xs])"
            )
    return _advance(unique, _make_bar(len(unique), desc, file))


def _advance(futures: list[Future[Any]], bar: _Bar) -> Iterator[Future[Any]]:
    failed = 0
    try:
        for future in as_completed(futures):
            if not future.cancelled() and future.exception() is not None:
                failed += 1
                bar.set_postfix_str(f"{failed} failed", refresh=False)
            bar.update(1)
            yield future
    finally:
        bar.close()

"""The pure renderers of executorlib.status and executorlib.progress: every field shows, any text is escaped, the
HTML is well-formed."""

from __future__ import annotations

import dataclasses
import html
from html.parser import HTMLParser

import pytest
from executorlib.progress_bar import bar_line
from executorlib.status import (
    ExecutorStatus,
    FutureStatus,
    SchedulerState,
    executor_html,
    executor_text,
    future_html,
    future_text,
)
from hypothesis import given
from hypothesis import strategies as st

VOID = {"br", "hr", "img", "input", "meta", "link"}


class WellFormed(HTMLParser):
    """Checks that every tag is closed in order, and collects the text shown."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(markup: str) -> str:
    """Parse ``markup``; fail unless it is well-formed; the text it shows."""
    parser = WellFormed()
    parser.feed(markup)
    parser.close()
    assert parser.stack == [], f"unclosed tags {parser.stack} in {markup}"
    return "".join(parser.text)


words = st.text(min_size=1, max_size=20).filter(lambda t: t.strip() != "" and "\r" not in t)
counts = st.integers(min_value=0, max_value=10**6)


@st.composite
def executor_statuses(draw: st.DrawFn) -> ExecutorStatus:
    state = SchedulerState(
        mode=draw(words),
        launcher=draw(words),
        alive=draw(st.none() | counts),
        unit=draw(st.sampled_from(["workers", "jobs"])),
        queued=draw(counts),
    )
    return ExecutorStatus(
        executor=draw(words),
        scheduler=state,
        queued=draw(counts),
        running=draw(counts),
        done=draw(counts),
        failed=draw(counts),
        cancelled=draw(counts),
        cache_directory=draw(st.none() | words),
        shut_down=draw(st.booleans()),
    )


@st.composite
def future_statuses(draw: st.DrawFn) -> FutureStatus:
    return FutureStatus(
        kind=draw(words),
        address=draw(st.integers(min_value=0, max_value=2**48)),
        function=draw(st.none() | words),
        state=draw(st.sampled_from(["pending", "running", "cancelled", "finished"])),
        outcome=draw(st.none() | words),
        cache_key=draw(st.none() | words),
        job_id=draw(st.none() | counts),
    )


@given(executor_statuses())
def test_executor_html_is_well_formed_and_shows_every_field(status: ExecutorStatus) -> None:
    shown = check_html(executor_html(status))
    expected = [status.executor, status.scheduler.mode, status.scheduler.launcher]
    expected.append(f"{status.queued} queued, {status.running} running, {status.done} done, {status.failed} failed")
    expected.append(status.cache_directory if status.cache_directory is not None else "none")
    if status.scheduler.alive is not None:
        expected.append(str(status.scheduler.alive))
    for part in expected:
        assert part in shown


@given(executor_statuses())
def test_executor_text_is_one_line_with_every_count(status: ExecutorStatus) -> None:
    text = executor_text(status)
    assert text.startswith(f"<{status.executor} ") and text.endswith(">")
    assert f"{status.done} done, {status.failed} failed, {status.cancelled} cancelled" in text
    running = executor_text(dataclasses.replace(status, shut_down=False))
    stopped = executor_text(dataclasses.replace(status, shut_down=True))
    assert len(stopped) == len(running) + len(", shut down") and text == (stopped if status.shut_down else running)
    if status.cache_directory is not None:
        assert f"cache_directory={status.cache_directory!r}" in text


@given(future_statuses())
def test_future_html_is_well_formed_and_text_names_what_is_known(status: FutureStatus) -> None:
    shown = check_html(future_html(status))
    text = future_text(status)
    assert status.state in shown and f"state={status.state}" in text
    for value in (status.function, status.outcome, status.cache_key):
        if value is not None:
            assert value in shown
    for value in (status.function, status.outcome):
        if value is not None:
            assert value in text
    if status.cache_key is not None:
        assert f"cache_key={status.cache_key!r}" in text
    if status.job_id is not None:
        assert f"job_id={status.job_id}" in text and str(status.job_id) in shown


def test_markup_in_a_name_is_shown_as_text_not_markup() -> None:
    status = FutureStatus("TaskFuture", 1, "<script>alert(1)</script>", "finished", "returned int", "a&b", 7)
    markup = future_html(status)
    assert "<script>" not in markup and html.escape("<script>") in markup
    assert "<script>alert(1)</script>" in check_html(markup)


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=0, max_value=500), st.integers(1, 80))
def test_bar_line_fills_in_proportion(done: int, extra: int, width: int) -> None:
    total = done + extra
    line = bar_line(done, total, width=width)
    inside = line[line.index("[") + 1 : line.index("]")]
    assert len(inside) == width
    filled = inside.count("#")
    assert inside == "#" * filled + "." * (width - filled)
    assert filled == (width if total == 0 else done * width // total)
    assert line.endswith(f"] {done}/{total}")


def test_bar_line_shows_label_and_postfix_and_refuses_nonsense() -> None:
    assert bar_line(1, 4, desc="fit", postfix="1 failed", width=4) == "fit: [#...] 1/4, 1 failed"
    with pytest.raises(ValueError, match="done=5, total=4"):
        bar_line(5, 4)

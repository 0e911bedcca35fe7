"""What a notebook shows (issue 18 item 2), with real executors in each mode: the executor's and the Futures'
``repr`` and ``_repr_html_``, the progress bar with tqdm and without, and the dependency graph inline."""

from __future__ import annotations

import io
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from xl_test_helpers import Gate, add, block_until_released, raise_value_error

TIMEOUT = 60
VOID = {"br", "hr", "img", "input", "meta", "link"}


class WellFormed(HTMLParser):
    """Fails on a tag closed out of order; collects the text shown."""

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


def shown(markup: str) -> str:
    """The text of well-formed ``markup`` (fails the test otherwise), cells separated by a space."""
    parser = WellFormed()
    parser.feed(markup)
    parser.close()
    assert parser.stack == [], f"unclosed {parser.stack}"
    return " ".join(parser.text)


def test_per_call_executor_and_its_futures(make_executor) -> None:
    exe = make_executor(max_workers=1)
    ok = exe.submit(add, 1, 2)
    bad = exe.submit(raise_value_error, "no")
    assert ok.result(timeout=TIMEOUT) == 3 and isinstance(bad.exception(timeout=TIMEOUT), ValueError)
    text = repr(exe)
    assert text.startswith("<SingleNodeExecutor a worker per call (LocalLauncher), ")
    assert "tasks: 0 queued, 0 running, 1 done, 1 failed, 0 cancelled>" in text
    table = shown(exe._repr_html_())
    assert "a worker per call" in table and "LocalLauncher" in table and "1 done, 1 failed" in table
    assert re.fullmatch(r"<TaskFuture of add at 0x[0-9a-f]+ state=finished returned int>", repr(ok))
    assert "state=finished raised ValueError>" in repr(bad) and "of raise_value_error" in repr(bad)
    assert shown(bad._repr_html_()) == "TaskFuture function raise_value_error state finished outcome raised ValueError"


def test_pool_shows_workers_alive_queued_running_and_the_cache(make_executor, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    cache = tmp_path / "cache"
    exe = make_executor(max_workers=1, block_allocation=True, cache_directory=str(cache))
    blocked = exe.submit(block_until_released, 1, *gate.args("a"))
    waiting = [exe.submit(add, i, 1) for i in range(2)]
    gate.wait_started("a")
    text = repr(exe)
    assert "a pool of 1 worker (LocalLauncher), 1 worker alive;" in text
    assert "tasks: 2 queued, 1 running, 0 done, 0 failed, 0 cancelled" in text
    assert f"cache_directory={str(cache)!r}" in text
    assert "state=running" in repr(blocked) and "cache_key='block_until_released" in repr(blocked)
    assert "state=pending" in repr(waiting[0])
    gate.release()
    assert [f.result(timeout=TIMEOUT) for f in [blocked, *waiting]] == [1, 1, 2]
    assert "3 done, 0 failed" in repr(exe)
    table = shown(exe._repr_html_())
    assert "workers alive 1" in table
    assert str(cache) in table and "3 done" in table


def test_cancelled_tasks_and_a_shut_down_pool(make_executor, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    exe = make_executor(max_workers=1, block_allocation=True)
    exe.submit(block_until_released, 1, *gate.args("a"))
    queued = [exe.submit(add, i, 1) for i in range(3)]
    gate.wait_started("a")
    assert all(f.cancel() for f in queued)
    assert "tasks: 0 queued, 1 running, 0 done, 0 failed, 3 cancelled" in repr(exe)
    assert "state=cancelled" in repr(queued[0])
    gate.release()
    exe.shutdown(wait=True)
    text = repr(exe)
    assert "0 workers alive, shut down;" in text and "1 done, 0 failed, 3 cancelled" in text
    assert "shut down" in shown(exe._repr_html_())


def test_file_mode_futures_name_their_cache_key_and_job_id(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor

    with TestClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        future = exe.submit(add, 2, 3)
        assert future.result(timeout=TIMEOUT) == 5
        text = repr(future)
        assert re.search(r"state=finished returned int cache_key='add[0-9a-f]+' job_id=\d+>$", text), text
        assert re.search(r"job id \d+", shown(future._repr_html_()))
        assert "task files (local process)" in repr(exe) and "1 done" in repr(exe)
        assert "local process" in shown(exe._repr_html_())


def test_graph_mode_says_nothing_runs(tmp_path: Path) -> None:
    from executorlib import SingleNodeExecutor

    exe = SingleNodeExecutor(plot_dependency_graph=True, plot_dependency_graph_filename=str(tmp_path / "g.dot"))
    exe.submit(add, 1, 2)
    assert "graph mode (records, runs nothing)" in repr(exe)
    exe.shutdown()
    assert "shut down" in repr(exe)


@pytest.mark.skipif(
    shutil.which("dot") is None, reason="the graphviz dot binary is not installed (apt install graphviz)"
)
def test_the_dependency_graph_is_shown_inline_as_svg(make_executor) -> None:
    exe = make_executor(record_dependency_graph=True)
    first = exe.submit(add, 1, 2)
    exe.submit(add, first, 3).result(timeout=TIMEOUT)
    svg = exe.dependency_graph()._repr_svg_()
    assert "<svg" in svg
    assert shown(svg).count("add") >= 2


# -- progress -------------------------------------------------------------------------------------------------


def _batch(make_executor):
    exe = make_executor(max_workers=2, block_allocation=True)
    return [exe.submit(add, 1, 1), exe.submit(raise_value_error, "x"), exe.submit(add, 2, 2)]


def test_progress_with_tqdm(make_executor) -> None:
    import executorlib
    import tqdm  # noqa: F401 - a dev dependency: this test is the tqdm path

    futures = _batch(make_executor)
    out = io.StringIO()
    seen = list(executorlib.progress(futures, desc="batch", file=out))
    assert set(seen) == set(futures) and len(seen) == 3
    drawn = out.getvalue()
    assert "batch: 100%" in drawn and "3/3" in drawn and "1 failed" in drawn


def test_progress_without_tqdm_draws_a_plain_bar(make_executor, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    import executorlib

    futures = _batch(make_executor)
    out = io.StringIO()
    seen = list(executorlib.progress(futures, desc="batch", file=out))
    assert set(seen) == set(futures)
    lines = out.getvalue().split("\r")
    assert lines[1].startswith("batch: [") and lines[1].endswith("] 0/3")
    assert lines[-1] == "batch: [" + "#" * 30 + "] 3/3, 1 failed\n"


def test_progress_refuses_what_is_not_a_future() -> None:
    import executorlib

    with pytest.raises(TypeError, match=r"progress\(\) takes Futures .* got int 3"):
        executorlib.progress([3])  # type: ignore[list-item]

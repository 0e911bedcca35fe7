"""record_dependency_graph=True: a run that executes can be drawn afterwards, without keeping its values."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
from xl_test_helpers import add

TIMEOUT = 60


class Payload(list):  # a list subclass can be weakly referenced, and pickles like a list
    pass


def test_executed_run_is_drawn_and_keeps_no_argument_values(make_executor, tmp_path: Path) -> None:
    pytest.importorskip("networkx")
    exe = make_executor(max_workers=2, block_allocation=True, record_dependency_graph=True)
    payload = Payload(range(1000))
    watch = weakref.ref(payload)
    first = exe.submit(add, 1, 2)
    second = exe.submit(add, first, 10)
    third = exe.submit(sum, [first, second, len(payload)])
    assert third.result(timeout=TIMEOUT) == 3 + 13 + 1000
    del payload
    gc.collect()
    assert watch() is None, "the recorded graph keeps an argument value alive"
    target = tmp_path / "run.svg"
    picture = exe.dependency_graph(str(target))
    svg = target.read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg[:500]
    assert svg.count('id="task_') == 3
    assert "add" in picture.dot and "sum" in picture.dot


def test_dependency_graph_needs_recording(make_executor) -> None:
    exe = make_executor(max_workers=1)
    with pytest.raises(ValueError, match="record_dependency_graph=True"):
        exe.dependency_graph()

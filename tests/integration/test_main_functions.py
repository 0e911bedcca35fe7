"""Functions defined in a notebook or a script (``__main__``) travel by value, pickled once while unchanged: a cell
run again, a global, a default or the code changed between calls must all reach the worker, never a stale copy."""

from __future__ import annotations

from typing import Any

import pytest

TIMEOUT = 60

FIRST_CELL = """
SCALE = 2

def compute(x, offset=0):
    return x * SCALE + offset
"""

EDITED_CELL = """
def compute(x, offset=0):
    return x * SCALE * 100 + offset
"""

COUNTING_CELL = """
TOTAL = 0

def count_calls():
    global TOTAL
    TOTAL += 1
    count_calls.calls = getattr(count_calls, "calls", 0) + 1
    assert TOTAL == count_calls.calls
    return count_calls.calls
"""

# Each copy of the function the worker runs is remembered in a list of the worker's own (builtins are not
# pickled with the function), so no copy's id can be reused by a later one.
KEPT_CELL = """
import builtins

def copies_seen():
    seen = builtins.__dict__.setdefault("_xl_test_copies", [])
    if not any(copy is copies_seen for copy in seen):
        seen.append(copies_seen)
    return len(seen)
"""


def notebook(source: str) -> dict[str, Any]:
    """A namespace named ``__main__`` with ``source`` run in it, as a notebook kernel runs a cell."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(source, namespace)
    return namespace


def code_of(body: str) -> Any:
    """The code of ``compute(x, offset=0)`` with another body."""
    return notebook(f"def compute(x, offset=0):\n    {body}\n")["compute"].__code__


@pytest.mark.parametrize("block_allocation", [False, True], ids=["per-call", "block"])
def test_a_function_redefined_in_a_notebook_runs_its_new_code(make_executor, block_allocation):
    namespace = notebook(FIRST_CELL)
    exe = make_executor(max_workers=1, block_allocation=block_allocation)

    def run(*args: Any) -> Any:
        return exe.submit(namespace["compute"], *args).result(timeout=TIMEOUT)

    assert namespace["compute"].__module__ == "__main__"
    assert run(3) == 6
    assert run(3) == 6, "unchanged: the same result from the kept pickle"
    exec(EDITED_CELL, namespace)  # the cell edited and run again: a new function object
    assert run(3) == 600
    namespace["SCALE"] = 5  # a global it reads, rebound
    assert run(3) == 1500
    namespace["compute"].__defaults__ = (7,)
    assert run(3) == 1507
    namespace["compute"].__code__ = code_of("return -x - offset")
    assert run(3) == -10
    namespace["SCALE"] = [1]  # a list: changed in place below, which identity alone would not see
    namespace["compute"].__code__ = code_of("return SCALE[-1] * x")
    assert run(3) == 3
    namespace["SCALE"].append(4)
    assert run(3) == 12


def test_a_pool_worker_keeps_the_function_it_unpickled(make_executor):
    """A pool worker unpickles a function sent again and again once: the same object runs every call."""
    namespace = notebook(KEPT_CELL)
    exe = make_executor(max_workers=1, block_allocation=True)
    copies = [exe.submit(namespace["copies_seen"]).result(timeout=TIMEOUT) for _ in range(4)]
    assert copies == [1, 1, 1, 1]


def test_every_call_starts_from_the_state_the_caller_sent(make_executor):
    """A function that changes itself on the worker (an attribute, a global) starts the next call as sent, as if
    unpickled per call (executorlib 1.x did so): the worker does not keep a copy whose state has changed."""
    namespace = notebook(COUNTING_CELL)
    exe = make_executor(max_workers=1, block_allocation=True)
    assert [exe.submit(namespace["count_calls"]).result(timeout=TIMEOUT) for _ in range(3)] == [1, 1, 1]
    exec(COUNTING_CELL, namespace)  # the same cell run again: the same bytes, still a fresh start
    assert exe.submit(namespace["count_calls"]).result(timeout=TIMEOUT) == 1

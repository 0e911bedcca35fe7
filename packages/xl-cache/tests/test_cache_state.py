"""The cache against an in-memory model (hypothesis state machine), and concurrent writers of one key."""

from __future__ import annotations

import operator
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any

import xl_cache
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

KEYS = st.sampled_from(["alpha", "beta", "gamma", "delta"])
VALUES = st.none() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=3)


class CacheModel(RuleBasedStateMachine):
    """Model: key -> ("pending", args) | ("done", output) | ("error", message)."""

    keys = Bundle("keys")

    @initialize()
    def make_directory(self) -> None:
        self.root = tempfile.mkdtemp(prefix="xl-cache-model-")
        self.directory = str(Path(self.root) / "cache")
        self.model: dict[str, tuple[str, Any]] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(target=keys, key=KEYS, output=VALUES)
    def write_output(self, key: str, output: Any) -> str:
        xl_cache.write_output(self.directory, key, operator.add, (1, 2), output=output)
        self.model[key] = ("done", output)
        return key

    @rule(target=keys, key=KEYS, message=st.text(min_size=1, max_size=8))
    def write_error(self, key: str, message: str) -> str:
        xl_cache.write_output(self.directory, key, operator.add, (), error=KeyError(message))
        self.model[key] = ("error", message)
        return key

    @rule(target=keys, key=KEYS, args=st.lists(VALUES, max_size=3))
    def write_input(self, key: str, args: list[Any]) -> str:
        xl_cache.write_input(self.directory, key, operator.add, args)
        if self.model.get(key, ("pending",))[0] == "pending":
            self.model[key] = ("pending", tuple(args))
        return key

    @rule(key=keys)
    def delete(self, key: str) -> None:
        removed = xl_cache.remove(self.directory, key)
        assert bool(removed) == (key in self.model)
        self.model.pop(key, None)

    @rule(key=KEYS)
    def read(self, key: str) -> None:
        outcome = xl_cache.load_result(self.directory, key)
        state = self.model.get(key)
        if state is None or state[0] == "pending":
            assert outcome is None
        elif state[0] == "done":
            assert outcome is not None and outcome.status == "done" and outcome.value == state[1]
        else:
            assert outcome is not None and outcome.status == "error"
            assert isinstance(outcome.value, KeyError) and outcome.value.args == (state[1],)

    @rule(key=KEYS)
    def future(self, key: str) -> None:
        state = self.model.get(key)
        try:
            future = xl_cache.get_future_from_cache(self.directory, key)
        except KeyError:  # the stored exception is raised (1.x)
            assert state is not None and state[0] == "error"
        except FileNotFoundError:
            assert state is None
        else:
            assert state is not None and future.done() == (state[0] == "done")
            if state[0] == "done":
                assert future.result(timeout=0) == state[1]

    @invariant()
    def listing_matches_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        listed = {entry.key: entry.status for entry in xl_cache.list_entries(self.directory)}
        assert listed == {key: state[0] for key, state in self.model.items()}
        pending = {e.key: e.input_args for e in xl_cache.list_entries(self.directory) if e.status == "pending"}
        assert pending == {key: state[1] for key, state in self.model.items() if state[0] == "pending"}


CacheModel.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestCacheModel = CacheModel.TestCase


def test_concurrent_threads_writing_one_key_leave_one_complete_file(tmp_path: Path) -> None:
    outputs = [list(range(i, i + 2000)) for i in range(8)]
    barrier = threading.Barrier(len(outputs), timeout=30)
    problems: list[BaseException] = []

    def write(output: list[int]) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                xl_cache.write_output(tmp_path, "same", len, (output,), output=output)
        except BaseException as problem:
            problems.append(problem)

    threads = [threading.Thread(target=write, args=(o,)) for o in outputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert problems == []
    outcome = xl_cache.load_result(tmp_path, "same")
    assert outcome is not None and outcome.value in outputs
    [entry] = xl_cache.list_entries(tmp_path)
    assert entry.input_args == (outcome.value,)  # inputs and output come from the same writer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same_o.h5"]  # no temporary file left


_WRITER = textwrap.dedent(
    """
    import sys, xl_cache
    n = int(sys.argv[2])
    for _ in range(20):
        xl_cache.write_output(sys.argv[1], "same", len, ([n] * 5000,), output=[n] * 5000)
    """
)


def test_concurrent_processes_writing_one_key_leave_one_complete_file(tmp_path: Path) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(n)], stderr=subprocess.PIPE)
        for n in range(4)
    ]
    seen = set()
    for _ in range(50):  # read while they write: always a complete file or none
        outcome = xl_cache.load_result(tmp_path, "same")
        if outcome is not None:
            assert outcome.value in ([n] * 5000 for n in range(4))
            seen.add(outcome.value[0])
    for writer in writers:
        _, err = writer.communicate(timeout=90)
        assert writer.returncode == 0, err.decode()
    final = xl_cache.load_result(tmp_path, "same")
    assert final is not None and final.value in ([n] * 5000 for n in range(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same_o.h5"]

"""Cancel and shutdown with tasks parked on Futures, and shutdown from a done-callback (issue 14, items 3-5).

Every mode: one process per call, a block-allocation pool, and the file mode (TestClusterExecutor). A parked task
waits for a Future argument; "never" is a plain Future nobody completes. Every wait is bounded: shutdowns run
through ``call_bounded``, scripts through ``subprocess.run(timeout=...)``, so a hang fails its test.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from pathlib import Path
from typing import Any

import pytest
from xl_test_helpers import Gate, add, block_until_released, call_bounded

TIMEOUT = 60
SHUTDOWN = 20
HELPERS = str(Path(__file__).resolve().parents[1])

MODES = ["one-process", "block", "test-cluster"]


def build(mode: str, directory: Path, *, cache: bool) -> Any:
    """An executor of ``mode``; the file mode always has its cache directory."""
    if mode == "test-cluster":
        from executorlib.api import TestClusterExecutor

        return TestClusterExecutor(cache_directory=str(directory / "cache"))
    from executorlib import SingleNodeExecutor

    cache_directory = str(directory / "cache") if cache else None
    return SingleNodeExecutor(max_workers=2, block_allocation=mode == "block", cache_directory=cache_directory)


@pytest.fixture
def make(tmp_path: Path, executor_registry: list[Executor]) -> Callable[..., Any]:
    def make_one(mode: str, *, cache: bool = False) -> Any:
        executor = build(mode, tmp_path, cache=cache)
        executor_registry.append(executor)
        return executor

    return make_one


def shutdown(exe: Any, **kwargs: Any) -> None:
    call_bounded(lambda: exe.shutdown(**kwargs), SHUTDOWN, what=f"shutdown({kwargs})")


def run_script(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [HELPERS, os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def notified(futures: list[Future[Any]]) -> bool:
    """Every Future counts as done for ``concurrent.futures.wait`` (a cancelled one was also notified)."""
    return not wait(futures, timeout=0).not_done


# --- item 3: a cancelled task parked on a Future that never completes ---------------------------------------


@pytest.mark.parametrize("how", ["future.cancel", "shutdown-cancel_futures"])
@pytest.mark.parametrize("mode", MODES)
def test_cancelling_a_task_parked_on_a_never_completing_future_releases_it(make, mode, how):
    exe = make(mode)
    never: Future[Any] = Future()
    dependent = exe.submit(add, never, 1)
    downstream = exe.submit(add, dependent, 1)
    if how == "future.cancel":
        assert dependent.cancel()
    else:
        shutdown(exe, wait=True, cancel_futures=True)
    shutdown(exe, wait=True)  # as the exit handler does
    assert dependent.cancelled() and downstream.cancelled()
    assert notified([dependent, downstream])
    assert not never.done()


EXIT_SCRIPT = """
    import sys
    from concurrent.futures import Future

    from executorlib import SingleNodeExecutor
    from executorlib.api import TestClusterExecutor
    from xl_test_helpers import add

    mode, how = sys.argv[1], sys.argv[2]
    if mode == "test-cluster":
        exe = TestClusterExecutor(cache_directory="cache")
    else:
        exe = SingleNodeExecutor(max_workers=1, block_allocation=mode == "block")
    never = Future()
    dependent = exe.submit(add, never, 1)
    downstream = exe.submit(add, dependent, 1)
    if how == "future.cancel":
        dependent.cancel()  # and no shutdown: the exit handler's must not wait for it
    else:
        exe.shutdown(wait=False, cancel_futures=True)
    print("cancelled:", dependent.cancelled(), downstream.cancelled(), flush=True)
"""


@pytest.mark.parametrize("how", ["future.cancel", "shutdown-cancel_futures"])
@pytest.mark.parametrize("mode", MODES)
def test_the_interpreter_exits_with_a_cancelled_task_parked_on_a_never_completing_future(tmp_path, mode, how):
    proc = run_script(tmp_path, EXIT_SCRIPT, mode, how)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cancelled: True True", proc.stderr
    assert "unexpected state" not in proc.stderr


# --- item 4: shutdown(cancel_futures=True) in file mode sets each Future once -------------------------------


def test_test_cluster_cancel_futures_ends_every_future_once_and_logs_nothing(make, gate, caplog):
    exe = make("test-cluster")
    running = [exe.submit(block_until_released, i, *gate.args(f"run{i}")) for i in range(2)]
    gate.wait_started("run0", "run1")
    never: Future[Any] = Future()
    dependents = [
        exe.submit(add, running[0], 1),  # waits for a job of this executor
        exe.submit(add, never, 1),  # waits for a Future from outside
        exe.submit(add, running[1], never),  # both
    ]
    with caplog.at_level(logging.DEBUG):
        shutdown(exe, wait=True, cancel_futures=True)
    futures = running + dependents
    assert all(f.cancelled() for f in futures), futures
    assert notified(futures)
    assert "unexpected state" not in caplog.text


CANCEL_SCRIPT = """
    from concurrent.futures import Future, wait
    from pathlib import Path

    from executorlib.api import TestClusterExecutor
    from xl_test_helpers import Gate, add, block_until_released, wait_for_files

    gate = Gate(Path(".").resolve())
    exe = TestClusterExecutor(cache_directory="cache")
    running = [exe.submit(block_until_released, i, *gate.args(f"run{i}")) for i in range(2)]
    wait_for_files([gate.started_path("run0"), gate.started_path("run1")])
    never = Future()
    dependents = [exe.submit(add, running[0], 1), exe.submit(add, never, 1), exe.submit(add, running[1], never)]
    exe.shutdown(wait=True, cancel_futures=True)
    futures = running + dependents
    print("cancelled:", all(f.cancelled() for f in futures), "not done:", len(wait(futures, timeout=0).not_done))
"""


def test_test_cluster_cancel_futures_in_a_script_prints_no_unexpected_state(tmp_path):
    proc = run_script(tmp_path, CANCEL_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cancelled: True not done: 0", proc.stderr
    assert "unexpected state" not in proc.stderr


# --- item 5: shutdown() from a done-callback ----------------------------------------------------------------


class CallbackShutdown:
    """A done-callback that shuts the executor down and records how that went, and on which thread."""

    def __init__(self, exe: Any, **kwargs: Any) -> None:
        self._exe = exe
        self._kwargs = kwargs
        self.ran = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def __call__(self, _: Future[Any]) -> None:
        self.thread = threading.current_thread()
        try:
            self._exe.shutdown(**self._kwargs)
        except BaseException as problem:
            self.error = problem
        finally:
            self.ran.set()

    def check(self) -> None:
        assert self.ran.wait(SHUTDOWN), "shutdown() in the done-callback did not return"
        assert self.error is None, repr(self.error)
        assert self.thread is not threading.main_thread(), "the callback ran on the caller's thread: no test"


@pytest.mark.parametrize("wait_", [True, False], ids=["wait", "no-wait"])
@pytest.mark.parametrize("mode", MODES)
def test_shutdown_from_a_done_callback_with_a_cache_directory(make, tmp_path, mode, wait_):
    exe = make(mode, cache=True)
    slow_gate, fast_gate = Gate(tmp_path), Gate(tmp_path / "fast")
    fast_gate.directory.mkdir()
    slow = exe.submit(block_until_released, 2, *slow_gate.args("slow"))
    fast = exe.submit(block_until_released, 1, *fast_gate.args("fast"))
    callback = CallbackShutdown(exe, wait=wait_)
    fast.add_done_callback(callback)
    fast_gate.release()
    callback.check()
    assert fast.result(timeout=0) == 1
    with pytest.raises(RuntimeError, match="after shutdown"):
        exe.submit(add, 1, 2)
    slow_gate.release_later(0.5)
    shutdown(exe, wait=True)
    if not wait_ and mode == "test-cluster":  # file mode: shutdown(wait=False) cancelled it, its job went on (1.x)
        assert slow.cancelled()
        return
    assert slow.done(), "a later shutdown(wait=True) returned before the last task ran"
    assert slow.result(timeout=TIMEOUT) == 2


@pytest.mark.parametrize("mode", ["one-process", "block"])
def test_shutdown_from_a_done_callback_with_a_task_still_waiting_for_an_argument(make, tmp_path, mode):
    exe = make(mode)  # no cache: the callback runs on the hub's IO thread
    slow_gate, fast_gate = Gate(tmp_path), Gate(tmp_path / "fast")
    fast_gate.directory.mkdir()
    slow = exe.submit(block_until_released, 2, *slow_gate.args("slow"))
    dependent = exe.submit(add, slow, 1)
    fast = exe.submit(block_until_released, 1, *fast_gate.args("fast"))
    callback = CallbackShutdown(exe, wait=True)
    fast.add_done_callback(callback)
    fast_gate.release()
    callback.check()
    slow_gate.release()
    assert dependent.result(timeout=TIMEOUT) == 3


@pytest.mark.parametrize("mode", MODES)
def test_shutdown_from_an_earlier_done_callback_of_an_outside_upstream(make, mode):
    exe = make(mode)
    outside: Future[Any] = Future()
    callback = CallbackShutdown(exe, wait=True)
    outside.add_done_callback(callback)  # runs before the dependent's own callback on the same Future
    dependent = exe.submit(add, outside, 1)
    producer = threading.Thread(target=outside.set_result, args=(41,), daemon=True)
    producer.start()
    callback.check()
    producer.join(SHUTDOWN)
    assert dependent.result(timeout=0) == 42  # shutdown(wait=True) ran it


CALLBACK_SCRIPT = """
    import sys
    import threading

    from executorlib import SingleNodeExecutor
    from executorlib.api import TestClusterExecutor
    from xl_test_helpers import add, sleep_and_return

    mode = sys.argv[1]
    if mode == "test-cluster":
        exe = TestClusterExecutor(cache_directory="cache")
    else:
        exe = SingleNodeExecutor(max_workers=2, block_allocation=mode == "block", cache_directory="cache")
    slow = exe.submit(sleep_and_return, 2, 1.0)
    fast = exe.submit(add, 1, 2)
    ran = threading.Event()
    fast.add_done_callback(lambda _: (exe.shutdown(), ran.set()))
    print("callback:", ran.wait(30), "results:", fast.result(timeout=30), slow.result(timeout=30), flush=True)
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_script_whose_done_callback_shuts_down_exits_cleanly(tmp_path, mode):
    proc = run_script(tmp_path, CALLBACK_SCRIPT, mode)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "callback: True results: 3 2", proc.stderr
    assert "exception calling callback" not in proc.stderr, proc.stderr

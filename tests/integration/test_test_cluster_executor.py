"""TestClusterExecutor: the file mode of the cluster executors with local processes, end to end.

Real task files (xl-cache), real ``python -m xl_cache.worker`` processes, real pids re-attached from a second
Python process. Every blocking call has a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest
from xl_spawn import pid_is_zombie

TIMEOUT = 60


def add(a: int, b: int) -> int:
    return a + b


def pair(a: int, b: int) -> dict[str, int]:
    return {"a": a, "b": b}


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def count_and_add(marker: str, a: int, b: int) -> int:
    with open(marker, "a") as handle:
        handle.write("ran\n")
    return a + b


def sleep_and_return(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def stubborn_once(marker: str, value: Any) -> Any:
    """The first run ignores SIGTERM (a cancel then waits for the launcher's SIGKILL), says so in ``marker`` and
    sleeps; a later run returns at once."""
    if os.path.exists(marker):
        return value
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(marker).write_text("ready")
    time.sleep(60)
    return None


def die(code: int) -> None:
    print("about to die", flush=True)
    print("last words on stderr", file=sys.stderr, flush=True)
    os._exit(code)


def mpi_rank_and_size(x: int) -> tuple[int, int, int]:
    from mpi4py import MPI

    return x, MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def executor(cache: Path) -> Iterator[Any]:
    from executorlib.api import TestClusterExecutor

    exe = TestClusterExecutor(cache_directory=str(cache))
    yield exe
    exe.shutdown(wait=False, cancel_futures=True)


def test_the_docs_examples_run(executor: Any) -> None:
    futures = [executor.submit(sum, [i, i]) for i in range(1, 4)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [2, 4, 6]
    future: Any = 0
    for i in range(4, 8):
        future = executor.submit(add, i, future)
    assert future.result(timeout=TIMEOUT) == 22


def test_items_and_splits_of_a_future_travel_as_references(executor: Any) -> None:
    from executorlib import get_item_from_future, split_future

    record = executor.submit(pair, 1, 2)
    total = executor.submit(add, get_item_from_future(record, "a"), get_item_from_future(record, "b"))
    first, second = split_future(executor.submit(tuple, [5, 6]), 2)
    assert total.result(timeout=TIMEOUT) == 3
    assert executor.submit(add, first, second).result(timeout=TIMEOUT) == 11


def test_an_exception_is_cached_and_reaches_dependents(executor: Any, cache: Path) -> None:
    failed = executor.submit(boom, 1)
    dependent = executor.submit(add, failed, 1)
    assert isinstance(failed.exception(timeout=TIMEOUT), ValueError)
    with pytest.raises(ValueError, match="boom 1"):
        dependent.result(timeout=TIMEOUT)
    again = executor.submit(boom, 1)
    assert again.done()  # from the cache: no process
    with pytest.raises(ValueError, match="boom 1"):
        again.result(timeout=0)


def test_a_cached_result_never_starts_a_process(cache: Path, tmp_path: Path) -> None:
    from executorlib import get_cache_data
    from executorlib.api import TestClusterExecutor

    marker = tmp_path / "ran"
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        assert exe.submit(count_and_add, str(marker), 1, 2).result(timeout=TIMEOUT) == 3
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        future = exe.submit(count_and_add, str(marker), 1, 2)
        assert future.done() and future.result(timeout=0) == 3
    assert marker.read_text() == "ran\n"
    [entry] = get_cache_data(str(cache))
    assert isinstance(entry["queue_id"], int) and entry["output"] == 3 and entry["input_args"][1:] == (1, 2)


def test_a_process_that_dies_fails_its_future_and_its_dependents(
    executor: Any, cache: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from executorlib.errors import JobFailedError

    dead = executor.submit(die, 3)
    dependent = executor.submit(add, dead, 1)
    error = dead.exception(timeout=TIMEOUT)
    assert isinstance(error, JobFailedError)
    assert error.state == "with exit status 3" and error.queue_id is not None
    # the tail of its stderr, from the copy kept in its folder (xl_cache.STDERR_LOG_NAME)
    assert str(error).endswith(":\nlast words on stderr") and error.log_file is not None
    assert Path(error.log_file).parent.parent == cache and Path(error.log_file).name == "stderr"
    printed = capfd.readouterr()
    assert "about to die" in printed.out and "last words on stderr" in printed.err  # ours, as in executorlib 1.x
    assert isinstance(dependent.exception(timeout=TIMEOUT), JobFailedError)
    assert not list(cache.glob("*_i.h5"))  # nothing pending is left behind
    # the dead task keeps its folder with its pid for a post-mortem
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [error.args[0].split()[1]]


def test_cancelling_a_future_terminates_its_process(executor: Any, cache: Path) -> None:
    future = executor.submit(sleep_and_return, 60, 1)
    dependent = executor.submit(add, future, 1)
    pid = _wait_for_queue_id(cache, "sleep_and_return")
    assert future.cancel()
    _wait_for_exit(pid)
    with pytest.raises(CancelledError):
        dependent.result(timeout=TIMEOUT)


def test_the_same_call_submitted_while_its_cancelled_process_ends_gets_its_result(
    executor: Any, cache: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ready"
    first = executor.submit(stubborn_once, str(marker), 7)
    pid = _wait_for_queue_id(cache, "stubborn_once")
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.cancel()
    again = executor.submit(stubborn_once, str(marker), 7)  # shares the process still ignoring its SIGTERM
    dependent = executor.submit(add, again, 1)
    assert again.result(timeout=TIMEOUT) == 7  # from a new process, not the cancellation of the first Future
    assert dependent.result(timeout=TIMEOUT) == 8 and first.cancelled()
    assert again.job.attempt == 1 and again.job.queue_id != pid
    _wait_for_exit(pid)


def test_shutdown_cancel_futures_stops_the_processes(cache: Path) -> None:
    from executorlib.api import TestClusterExecutor

    exe = TestClusterExecutor(cache_directory=str(cache))
    running = exe.submit(sleep_and_return, 60, 1)
    waiting = exe.submit(add, running, 1)
    pid = _wait_for_queue_id(cache, "sleep_and_return")
    start = time.monotonic()
    exe.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - start < 10
    assert running.cancelled() and waiting.cancelled()
    _wait_for_exit(pid)
    assert not list(cache.glob("*_i.h5"))
    with pytest.raises(RuntimeError, match="after shutdown"):
        exe.submit(add, 1, 1)


def test_disconnect_and_reconnect_from_a_second_process(cache: Path, tmp_path: Path) -> None:
    """The first process submits, detaches with shutdown(wait=False) and exits; its processes keep running;
    the second submits the same calls, re-attaches to the running ones and reads every result, each call
    having run once."""
    marker = tmp_path / "ran"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from executorlib.api import TestClusterExecutor
        import test_test_cluster_executor as t
        from xl_serial import register_by_value
        register_by_value(t)
        exe = TestClusterExecutor(cache_directory={str(cache)!r})
        first = exe.submit(t.sleep_and_return, float(sys.argv[1]), 5)
        second = exe.submit(t.count_and_add, {str(marker)!r}, first, 1)
        if sys.argv[2] == "detach":
            exe.shutdown(wait=False, cancel_futures=False)
            print("detached", flush=True)
        else:
            with exe:
                print(first.result(timeout=60), second.result(timeout=60), flush=True)
        """
    )
    run = [sys.executable, "-c", script]
    # its processes print to its stdout (1.x): a file, since a pipe would stay open until they ended
    log = tmp_path / "first.out"
    with log.open("w") as handle:
        out = subprocess.run([*run, "3", "detach"], stdout=handle, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    assert out.returncode == 0 and "detached" in log.read_text(), log.read_text()
    pid = _wait_for_queue_id(cache, "sleep_and_return")
    os.kill(pid, 0)  # still running after its submitter exited
    out = subprocess.run([*run, "3", "attach"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "6"]
    assert marker.read_text() == "ran\n"
    from executorlib import get_cache_data

    [slept] = [e for e in get_cache_data(str(cache)) if e["function"].__name__ == "sleep_and_return"]
    assert slept["queue_id"] == pid  # the second process re-attached to the first one's job


def test_the_constructor_rejects_what_file_mode_cannot_do(cache: Path) -> None:
    from executorlib.api import TestClusterExecutor

    for kwargs in ({"max_workers": 2}, {"max_cores": 2}, {"block_allocation": True}, {"hostname_localhost": True}):
        with pytest.raises(ValueError):
            TestClusterExecutor(cache_directory=str(cache), **kwargs)
    with pytest.raises(ValueError, match="init_function"):
        TestClusterExecutor(cache_directory=str(cache), init_function=dict)


def test_queue_keys_are_accepted_so_cluster_code_runs_unchanged(executor: Any) -> None:
    resource_dict = {"partition": "debug", "run_time_max": 120, "memory_max": 1, "submission_template": "x"}
    assert executor.submit(add, 1, 1, resource_dict=resource_dict).result(timeout=TIMEOUT) == 2


MISSPELLINGS = [("corez", "cores"), ("thread_per_core", "threads_per_core"), ("cach_key", "cache_key")]


@pytest.mark.parametrize(("key", "suggestion"), MISSPELLINGS)
def test_a_misspelt_key_warns_at_submit_and_construction_as_in_1x(
    executor: Any, cache: Path, key: str, suggestion: str
) -> None:
    """It would otherwise pass silently as a job template variable that nothing reads; 1.x warns and passes it on,
    and so do we (compat-1x.md §12), naming the closest valid key."""
    from executorlib.api import TestClusterExecutor
    from executorlib.errors import ResourceKeyWarning

    with pytest.warns(ResourceKeyWarning) as at_submit:
        future = executor.submit(add, 1, 1, resource_dict={key: 2})
    with pytest.warns(ResourceKeyWarning) as at_construction:
        TestClusterExecutor(cache_directory=str(cache), resource_dict={key: 2}).shutdown()
    for record in (at_submit, at_construction):
        message = str(record[0].message)
        assert f"The following keys are not recognized and cannot be validated: [{key!r}]" in message, message
        assert f"Did you mean {suggestion!r}?" in message, message
        assert "Fix the spelling" in message and "submission_template" in message, message  # the fix
        assert record[0].filename == __file__, "the warning names the user's line"
    assert issubclass(ResourceKeyWarning, UserWarning)  # 1.x code filtering UserWarning still sees it
    assert future.result(timeout=TIMEOUT) == 2  # passed on: TestClusterExecutor runs no job script


def test_a_variable_of_the_submission_template_is_accepted(executor: Any) -> None:
    from executorlib.errors import ResourceKeyWarning

    template = "#!/bin/bash\n#SBATCH --account={{ account }}\n{{ command }}\n"
    resource_dict = {"submission_template": template, "account": "acme"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a variable the template reads is no typo: no warning
        assert executor.submit(add, 1, 2, resource_dict=resource_dict).result(timeout=TIMEOUT) == 3
    with pytest.warns(ResourceKeyWarning, match=r"\['acount'\].*Did you mean 'account'"):  # the template's names
        executor.submit(add, 1, 2, resource_dict={"submission_template": template, "acount": "acme"})


def test_mpi_task_runs_on_two_ranks_and_every_rank_answers(executor: Any) -> None:
    pytest.importorskip("mpi4py")
    future = executor.submit(mpi_rank_and_size, 3, resource_dict={"cores": 2})
    assert future.result(timeout=TIMEOUT) == [(3, 2, 0), (3, 2, 1)]  # every rank, in rank order


def _wait_for_queue_id(cache: Path, function: str, timeout: float = TIMEOUT) -> int:
    """The pid of the pending task's process, from the ``<cache>/<key>/queue_id`` file the executor records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in cache.glob(f"{function}*_i.h5"):
            try:
                text = (cache / path.name.removesuffix("_i.h5") / "queue_id").read_text()
            except OSError:
                continue
            if text.strip().isdigit():
                return int(text)
        time.sleep(0.05)
    raise AssertionError(f"no queue id recorded for {function} in {cache}")


def _wait_for_exit(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if pid_is_zombie(pid):
            return  # exited, not yet reaped by its (gone) parent; one gone since kill() is seen on the next turn
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"process {pid} still runs")

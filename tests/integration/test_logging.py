"""Logging you can switch on (issue 18 item 3): what a real executor says at DEBUG/INFO, and a restarted worker
is a warning the user sees once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from xl_test_helpers import record_attempt_and_exit

TIMEOUT = 60

SCRIPT = textwrap.dedent(
    """
    from executorlib import SingleNodeExecutor

    if __name__ == "__main__":
        with SingleNodeExecutor(max_workers=1, block_allocation={block}) as exe:
            print(exe.submit(sum, [1, 2]).result(timeout=60))
    """
)


def _run(tmp_path: Path, block: bool, log: str | None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(block=block))
    env = {k: v for k, v in os.environ.items() if k != "EXECUTORLIB_LOG"}
    if log is not None:
        env["EXECUTORLIB_LOG"] = log
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def test_debug_log_of_a_pool_shows_its_workers_start_and_stop(tmp_path: Path) -> None:
    done = _run(tmp_path, True, "debug")
    assert done.returncode == 0 and done.stdout == "3\n", done.stderr
    for line in [
        "executorlib INFO [MainThread] SingleNodeExecutor ready: {'block_allocation': True",
        "xl_spawn.process DEBUG [MainThread] started pid",
        "executorlib DEBUG [MainThread] started worker 1 (executorlib_worker_id 0)",
        "worker 1 is ready (pid",
        "stopping the pool's 1 workers",
    ]:
        assert line in done.stderr, f"{line!r} missing from:\n{done.stderr}"


def test_debug_log_per_call_names_the_function_of_each_worker(tmp_path: Path) -> None:
    done = _run(tmp_path, False, "debug")
    assert done.returncode == 0 and done.stdout == "3\n", done.stderr
    assert "executorlib DEBUG [executorlib-starter] worker 1 started for sum: pid" in done.stderr, done.stderr


def test_info_leaves_out_debug_and_no_variable_prints_nothing(tmp_path: Path) -> None:
    info = _run(tmp_path, True, "info")
    assert "SingleNodeExecutor ready" in info.stderr and "DEBUG" not in info.stderr
    quiet = _run(tmp_path, True, None)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_a_restarted_worker_warns_once_per_executor(make_executor, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    exe = make_executor(max_workers=1, block_allocation=True, restart_limit=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # only the executor's own bookkeeping may keep the second one away
        error = exe.submit(record_attempt_and_exit, str(attempts), 3).exception(timeout=3 * TIMEOUT)
    assert error is not None
    assert len(attempts.read_text().split()) == 3  # two restarts happened
    restarts = [w for w in caught if "restart_limit" in str(w.message)]
    assert len(restarts) == 1, [str(w.message) for w in caught]
    [warning] = restarts
    assert warning.category is UserWarning
    message = str(warning.message)
    assert "died; starting another in its place (1 of restart_limit=2 restarts left)" in message
    assert "executorlib.log_to_stderr()" in message

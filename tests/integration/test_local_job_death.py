"""TestClusterExecutor: a local job that dies without writing its output is reported with how it ended (exit
status or signal) and the last lines it printed to stderr, read from the copy ``tee`` keeps in the task's folder
(``<cache>/<key>/stderr``), as a SLURM job is reported with its log. Its prints still reach the terminal as in
executorlib 1.x, a finished task leaves only its ``<key>_o.h5``, and a job left running by ``shutdown(wait=False)``
outlives a closed stderr of the process that started it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIMEOUT = 60


def killed_after_a_word() -> None:
    print("a line\\nthe last line before SIGKILL", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def talk_and_return(value: int) -> int:
    print("said on stdout", flush=True)
    print("said on stderr", file=sys.stderr, flush=True)
    return value


def test_a_job_killed_by_a_signal_names_it_and_quotes_its_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from executorlib.api import TestClusterExecutor
    from executorlib.errors import JobFailedError

    cache = tmp_path / "cache"
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        error = exe.submit(killed_after_a_word).exception(timeout=TIMEOUT)
    assert isinstance(error, JobFailedError) and error.state == "killed by SIGKILL"
    assert "the last line before SIGKILL" in str(error) and "killed by SIGKILL" in str(error)
    assert error.log_file is not None and Path(error.log_file).read_text().endswith("the last line before SIGKILL\n")
    assert "the last line before SIGKILL" in capfd.readouterr().err  # shown as it was printed, too


def test_a_finished_job_leaves_only_its_output_and_its_prints_were_shown(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from executorlib.api import TestClusterExecutor

    cache = tmp_path / "cache"
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        assert exe.submit(talk_and_return, 5, resource_dict={"cache_key": "talk"}).result(timeout=TIMEOUT) == 5
        assert sorted(p.name for p in cache.iterdir()) == ["talk_o.h5"]  # no folder, no stderr copy
    printed = capfd.readouterr()
    assert "said on stdout" in printed.out and "said on stderr" in printed.err


def test_a_detached_job_outlives_the_stderr_of_its_starter(tmp_path: Path) -> None:
    """The starter exits and its stderr pipe is closed: the job still prints to stderr and writes its output (a
    job writing straight into that pipe would fail with BrokenPipeError)."""
    from executorlib import get_future_from_cache

    cache = tmp_path / "cache"
    release = tmp_path / "release"
    os.mkfifo(release)
    script = tmp_path / "starter.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from executorlib.api import TestClusterExecutor

            def late_talker(release):
                with open(release) as fifo:  # blocks until the test has closed the starter's stderr
                    fifo.read()
                for _ in range(1000):
                    print("talking after the starter is gone", file=sys.stderr, flush=True)
                return 7

            if __name__ == "__main__":
                exe = TestClusterExecutor(cache_directory={str(cache)!r})
                exe.submit(late_talker, {str(release)!r}, resource_dict={{"cache_key": "late"}})
                exe.shutdown(wait=False)
            """
        )
    )
    starter = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path
    )
    assert starter.wait(timeout=TIMEOUT) == 0
    assert starter.stderr is not None
    starter.stderr.close()  # nobody reads the starter's stderr any more
    job = os.pidfd_open(int((cache / "late" / "queue_id").read_text()))  # the pid file lives while the job runs
    try:
        with open(release, "w") as fifo:  # the job waits for this (pytest-timeout bounds it)
            fifo.write("go")
        assert select.select([job], [], [], TIMEOUT)[0] == [job], "the job did not end"
    finally:
        os.close(job)
    assert get_future_from_cache(str(cache), "late").result(timeout=0) == 7
    assert sorted(p.name for p in cache.iterdir()) == ["late_o.h5"]

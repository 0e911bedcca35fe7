"""LocalJobLauncher: local processes as the jobs of the file-mode scheduler (``TestClusterExecutor``).

Each task runs as ``python -m xl_cache.worker <key>_i.h5`` (under ``mpiexec -n N`` for N cores) in a session of its
own, printing to this process's stdout and stderr, in the call's ``cwd`` or else the cache directory. Its stderr
passes through ``tee``, which also keeps a copy in ``<cache>/<key>/stderr`` (``xl_cache.STDERR_LOG_NAME``): a job
that dies without output (``os._exit``, a signal) is reported with its exit status and that copy's last lines.
``tee`` is a process of its own rather than a thread here, so a job left running by ``shutdown(wait=False)`` keeps
a reader for its stderr after this process is gone (it would fail writing to a pipe whose reader died). One watcher
thread waits on one exit fd per process (``xl_spawn.exit_fd``, no polling); a task whose arguments come from other
tasks starts from the end callback of the last of them, as a batch scheduler would start an ``afterok`` job. The
processes are not tied to this one: ``shutdown(wait=False)`` leaves them running, and a later executor re-attaches
to them by the pid recorded in ``<cache>/<key>/queue_id`` (checked against ``/proc/<pid>/cmdline`` so a recycled pid
is not mistaken for the job), a file that lives only while the process runs: once the output exists it goes with its
folder, so a finished cache directory holds one ``<key>_o.h5`` per task and nothing else. The pid goes to that small
file rather than into the task file: rewriting the HDF5 task file after each start cost about a millisecond of this
process's CPU per task; the worker reads it back (``XL_CACHE_QUEUE_ID_FILE``) into the output's queue id."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from xl_cache import QUEUE_ID_FILE_VARIABLE, STDERR_LOG_NAME, write_queue_id_file
from xl_spawn import UnwatchableProcessError, exit_fd, pid_runs

from executorlib.launchers.local import LocalLauncher
from executorlib.launchers.protocol import user_import_paths
from executorlib.resources import Resources, check_template_keys
from executorlib.task_file import FileTask, JobEnd, upstream_lost

WORKER_MODULE = "xl_cache.worker"
#: After SIGTERM, how long a cancelled process may take before it gets SIGKILL.
TERMINATE_GRACE_SECONDS = 2.0
#: How long a job that ended without output may take to pass its last words through ``tee`` to its log.
LOG_DRAIN_SECONDS = 2.0


def _variables(template: str | None) -> frozenset[str] | None:
    """What a SLURM job script made from ``template`` would read; the template itself is not used here, but code
    written for SlurmClusterExecutor runs unchanged. None (nothing to check) without jinja2 or for a template
    that does not parse, which this executor never renders."""
    if template is None:
        return frozenset()
    try:
        from xl_spawn import template_variables

        return template_variables(template)
    except Exception:
        return None


def remove_job_directory(task: FileTask) -> None:
    """Delete ``<key>/queue_id``, the copy of the job's stderr, and then ``<key>/`` if nothing else is in it (a
    task whose process died keeps them for a post-mortem)."""
    for path in (task.queue_id_file, os.path.join(task.job_directory, STDERR_LOG_NAME)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with contextlib.suppress(OSError):  # gone already, or holds files that are not ours to delete
        os.rmdir(task.job_directory)


class LocalJobLauncher:
    """Runs task files as local processes; reports each end from one watcher thread."""

    name = "local process"

    def __init__(self, *, openmpi_oversubscribe: bool = False) -> None:
        self._local = LocalLauncher(openmpi_oversubscribe, gpus=())  # its mpiexec command line; jobs get no GPUs
        self._on_end: Callable[[FileTask, JobEnd], None] | None = None
        self._lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._wake_r, self._wake_w = -1, -1
        self._pending_registrations: list[tuple[int, FileTask, subprocess.Popen[bytes] | None]] = []
        self._running: dict[int, tuple[FileTask, subprocess.Popen[bytes] | None, int]] = {}  # pid -> task, proc, fd
        self._tees: dict[int, subprocess.Popen[bytes]] = {}  # pid -> the tee copying its stderr
        self._cancelled: set[int] = set()  # pids stopped by cancel(): their end needs no last words
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._env: dict[str, str] | None = None
        self._tee: str | None = shutil.which("tee")  # looked up once: a PATH search per job cost 30 us here

    def bind(self, on_end: Callable[[FileTask, JobEnd], None], lock: threading.Lock) -> None:
        self._on_end = on_end
        self._task_lock = lock

    def check(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        self._local.check(resources, where=where)
        if extras:
            check_template_keys(
                extras,
                _variables(resources.submission_template),
                where=where,
                template=(
                    "your submission_template"
                    if resources.submission_template is not None
                    else "a job script (TestClusterExecutor runs none, so only queue keys are accepted)"
                ),
            )

    def info(self) -> dict[str, Any]:
        return {"running": len(self._running)}

    # -- start -------------------------------------------------------------------------------------------------

    def start(self, task: FileTask, after: Sequence[FileTask]) -> None:
        if not after:
            self._spawn(task)
            return
        remaining = [len(after)]
        count_lock = threading.Lock()
        attempt = task.attempt

        def one_ended(upstream: FileTask) -> None:
            with count_lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if not last or task.ended or task.attempt != attempt:  # cancelled while it waited (and started again)
                return
            lost = next((up for up in after if up.lost is not None), None)
            assert self._on_end is not None
            if lost is not None:
                self._on_end(task, upstream_lost(lost))
                return
            try:
                self._spawn(task)
            except Exception as problem:
                self._on_end(task, JobEnd("FAILED", f"the process could not start: {problem!r}"))

        for upstream in after:
            upstream.when_ended(one_ended, self._task_lock)

    def _worker_env(self) -> dict[str, str]:
        if self._env is None:
            from xl_spawn import prepend_path

            env = dict(os.environ)
            env["PYTHONPATH"] = prepend_path(os.environ.get("PYTHONPATH"), *user_import_paths())
            self._env = env
        return self._env

    def _task_env(self, task: FileTask) -> dict[str, str]:
        """The worker's environment: where to read its queue id (its pid, known only once it runs)."""
        return {**self._worker_env(), QUEUE_ID_FILE_VARIABLE: task.queue_id_file}

    def argv(self, task: FileTask) -> list[str]:
        return self._local.on_ranks(task.resources.cores, [sys.executable, "-m", WORKER_MODULE, task.input_file])

    def job_script(self, task: FileTask, after: Sequence[FileTask]) -> str:
        """The command line of the task's process (started once ``after`` ended)."""
        import shlex

        return shlex.join(self.argv(task))

    def _spawn(self, task: FileTask) -> None:
        os.makedirs(task.job_directory, mode=0o700, exist_ok=True)
        task.job_log = os.path.join(task.job_directory, STDERR_LOG_NAME)
        # stdout and stderr reach ours, so prints show in the terminal (1.x); stderr through tee, which keeps the
        # copy a death is reported with. The worker changes into the call's cwd itself, so a process starts in
        # the cache directory, leaving nothing there but the task's files.
        copier, write_end = self._start_tee(self._tee, task.job_log)
        try:
            proc = subprocess.Popen(
                self.argv(task),
                cwd=task.cache_directory,
                stdin=subprocess.DEVNULL,
                stderr=write_end,  # None (ours) when tee is missing
                env=self._task_env(task),
                start_new_session=True,
            )
        finally:
            if write_end is not None:
                os.close(write_end)  # the job holds it now; tee ends when the job's stderr closes
        task.queue_id = proc.pid
        if copier is not None:
            with self._lock:
                self._tees[proc.pid] = copier
        # before the watch: the end (and the removal of this file with its folder) cannot come first
        with contextlib.suppress(OSError):  # the id serves re-attachment and the output; the process runs anyway
            write_queue_id_file(task.queue_id_file, proc.pid)
        self._watch(task, proc.pid, proc)

    @staticmethod
    def _start_tee(tee: str | None, log: str) -> tuple[subprocess.Popen[bytes] | None, int | None]:
        """A ``tee`` from a new pipe to our stderr and ``log``, and the pipe's write end for the job's stderr;
        ``(None, None)`` where tee is missing or cannot start (the job then prints to our stderr directly, and a
        death is reported without its last words). In a session of its own, as the job, so Ctrl-C stops neither;
        it ends at the end of the job's stderr, and if our stderr goes away it keeps the copy going
        (``warn-nopipe``), so the job never meets a broken pipe."""
        if tee is None:
            return None, None
        read_end, write_end = os.pipe()
        try:
            copier = subprocess.Popen(
                [tee, "-a", "--output-error=warn-nopipe", log], stdin=read_end, stdout=2, start_new_session=True
            )
        except OSError:
            os.close(write_end)
            return None, None
        finally:
            os.close(read_end)
        return copier, write_end

    def attach(self, task: FileTask) -> bool:
        pid = task.queue_id
        task.job_log = os.path.join(task.job_directory, STDERR_LOG_NAME)  # kept by the earlier executor's tee
        if pid is None or not pid_runs(pid, task.input_file):
            return False
        try:
            self._watch(task, pid, None)
        except (ProcessLookupError, UnwatchableProcessError):
            return False  # gone, or no way here to learn when it ends: the task is submitted again
        return True

    # -- watch -------------------------------------------------------------------------------------------------

    def _watch(self, task: FileTask, pid: int, proc: subprocess.Popen[bytes] | None) -> None:
        fd = exit_fd(pid, child=proc is not None)
        with self._lock:
            if self._selector is None:
                self._selector = selectors.DefaultSelector()
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_w, False)
                self._selector.register(self._wake_r, selectors.EVENT_READ, None)
                self._thread = threading.Thread(target=self._run, name="executorlib-local-jobs", daemon=True)
                self._thread.start()
            self._running[pid] = (task, proc, fd)
            self._pending_registrations.append((fd, task, proc))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        while True:
            with self._lock:
                for fd, task, _ in self._pending_registrations:
                    selector.register(fd, selectors.EVENT_READ, task)
                self._pending_registrations.clear()
                if self._stopping and not self._running:
                    break
            for key, _ in selector.select():
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                self._ended(key.fd, key.data)
        selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _ended(self, fd: int, task: FileTask) -> None:
        assert self._selector is not None and task.queue_id is not None
        self._selector.unregister(fd)
        os.close(fd)
        with self._lock:
            _, proc, _ = self._running.pop(task.queue_id, (task, None, fd))
            copier = self._tees.pop(task.queue_id, None)
            stopped = task.queue_id in self._cancelled
            self._cancelled.discard(task.queue_id)
        if copier is not None and not stopped and not os.path.exists(task.output_file):
            # no output: its last words must be in the log before the error quotes them (a grandchild still
            # holding the stderr open keeps tee going: then the log is quoted as it is)
            with contextlib.suppress(subprocess.TimeoutExpired):
                copier.wait(LOG_DRAIN_SECONDS)
        elif copier is not None:
            copier.poll()  # reaped now if it has ended; else subprocess reaps it later
        if proc is not None:
            code = proc.wait()
            state = "COMPLETED" if code == 0 else f"with exit status {code}"
            if code < 0:
                with contextlib.suppress(ValueError):
                    state = f"killed by {signal.Signals(-code).name}"
        else:
            state = "(a process started by an earlier executor)"
        if os.path.exists(task.output_file):
            remove_job_directory(task)  # before the Futures settle: a finished task leaves only its output
        assert self._on_end is not None
        self._on_end(task, JobEnd(state))

    # -- stop --------------------------------------------------------------------------------------------------

    def cancel(self, task: FileTask) -> None:
        pid = task.queue_id
        with self._lock:
            running = pid is not None and pid in self._running
        if not running or pid is None:
            if pid is None:  # not started yet (waiting for its upstream): it never will
                assert self._on_end is not None
                self._on_end(task, JobEnd("CANCELLED", "cancelled before it started"))
            return
        with self._lock:
            self._cancelled.add(pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)

        def kill() -> None:
            with self._lock:
                still = pid in self._running
            if still:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

        timer = threading.Timer(TERMINATE_GRACE_SECONDS, kill)
        timer.daemon = True
        timer.start()

    def close(self, wait: bool) -> None:
        """Stop the watcher once nothing runs any more (processes left running keep it, and it keeps completing
        their Futures while this process lives)."""
        with self._lock:
            self._stopping = True
            started = self._selector is not None
        if started:
            self._wake()

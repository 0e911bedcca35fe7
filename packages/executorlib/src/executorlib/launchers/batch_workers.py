"""BatchWorkerLauncher: pool workers as batch jobs (``SlurmClusterExecutor``/``FluxClusterExecutor`` with
``block_allocation=True``).

The pool is the ordinary :class:`~executorlib.schedulers.pool.PoolScheduler`; only how a worker starts differs.
:class:`BatchWorkerLauncher` is its launcher: ``argv`` builds the worker's command as for a local worker
(``srun``/``flux run`` around it for N ranks), and ``spawner`` hands out a :class:`BatchJobSpawner`, which submits
that command as one batch job (``sbatch``, ``flux batch``) instead of starting a process. The worker connects back
to the executor's hub (bound on this host's name), reading the key from a 0600 file in a private directory under the
launcher's directory (``XL_COMM_KEY_FILE``, see xl_comm.keys), never from its command line or the job's environment;
the worker deletes the file once read. One :class:`xl_spawn.QueueWatcher` per launcher asks the queue about all
worker jobs at once and, when a job ended, makes its spawner's sentinel readable: the hub then reports the worker's
exit, and its task fails (or is retried on a new job, per ``restart_limit``) as for a local worker that died.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xl_cache import log_tail
from xl_comm import discard_key_file
from xl_spawn import JOB_LOG_NAME

from executorlib.launchers.batch_jobs import BatchSystem, require_cluster_extra
from executorlib.resources import Resources

if TYPE_CHECKING:
    from xl_spawn import JobEnd as QueueEnd

#: Bytes of the job's log quoted when the worker died.
LOG_TAIL_BYTES = 4096

_numbers = itertools.count(1)


class BatchWorkerLauncher:
    """A launcher whose workers are batch jobs; see the module docstring."""

    keep_stderr = 0  # a job's log (stderr_tail) stands in for the stderr of a local process
    same_host = False
    enforces_run_time_max = True  # the job's time limit
    gpus = None  # the batch system assigns each job its devices

    def __init__(
        self,
        directory: str,
        *,
        system: BatchSystem,
        resources: Resources,
        extras: Mapping[str, Any],
    ) -> None:
        from xl_spawn import QueueWatcher

        require_cluster_extra(system, resources.submission_template)
        self.system = system
        self.queue = system.queue
        self.directory = directory
        self._extras = dict(extras)
        self._resources = resources  # the pool's: every worker job asks for the same
        self._watcher = QueueWatcher(self.queue, name=f"executorlib-{system.name.lower()}-workers")

    @property
    def queries(self) -> int:
        """Status queries made (squeue and sacct, or flux jobs, calls), for benchmarks and tests."""
        return self._watcher.queries

    # -- the Launcher protocol ----------------------------------------------------------------------------------

    def close(self) -> None:
        pass  # nothing kept between workers

    def prestarts(self, resources: Resources) -> bool:
        return False  # an idle batch job would hold a queued or running job of the cluster

    def check(self, resources: Resources, *, where: str) -> None:
        """What the batch system can run at all; else a job that cannot run fails through the submission's own
        message."""
        self.system.check_request(resources, where)

    def argv(self, resources: Resources, worker_args: Sequence[str]) -> list[str]:
        ranks = ["--mpi"] if resources.cores > 1 else []
        command = [sys.executable, "-m", "xl_comm.worker", *worker_args, *ranks]
        return self.system.step(resources, command)

    def key_directory(self, resources: Resources) -> str | None:
        return self.directory  # shared with the compute nodes, as the job directories are

    def spawner(self, resources: Resources, *, env: dict[str, str], keep_stderr: int = 0) -> BatchJobSpawner:
        return BatchJobSpawner(self, cwd=resources.cwd, env=env)

    # -- submission -------------------------------------------------------------------------------------------

    def submit(self, spawner: BatchJobSpawner, argv: Sequence[str]) -> int:
        """Submit the worker's job; returns its id."""
        resources = self._resources
        env = dict(spawner.env)  # names the key file, not the key
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        job_directory = os.path.join(self.directory, f"worker-{os.getpid()}-{next(_numbers)}")
        os.mkdir(job_directory, mode=0o700)
        lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
        if spawner.cwd:
            lines.append(f"mkdir -p {shlex.quote(spawner.cwd)} && cd {shlex.quote(spawner.cwd)}")
        lines.append(shlex.join(argv))
        variables = self.system.variables(
            resources,
            self._extras,
            job_name="executorlib-worker",
            working_directory=job_directory,
            command="\n".join(lines),
        )
        spawner.job_directory = job_directory
        job = self.queue.submit(job_directory, variables, resources.submission_template)

        def ended(end: QueueEnd) -> None:
            spawner.ended(end.state)

        self._watcher.watch(job, ended)
        self._watcher.hurry()  # a worker that cannot start shows soon
        return job

    def cancel(self, job: int) -> None:
        with contextlib.suppress(Exception):  # gone already
            self.queue.cancel([job])
        self._watcher.hurry()


class BatchJobSpawner:
    """One worker's batch job, behind the interface of :class:`xl_spawn.SubprocessSpawner` the pool uses:
    ``pid`` is the job id, ``sentinel`` turns readable when the job ended, ``shutdown`` cancels it."""

    def __init__(self, launcher: BatchWorkerLauncher, *, cwd: str | None, env: Mapping[str, str]) -> None:
        self._launcher = launcher
        self.cwd = cwd
        self.env = dict(env)
        self.job_directory: str | None = None
        self._job: int | None = None
        self._state: str | None = None
        self._ended = threading.Event()
        self._read, self._write = os.pipe()
        self._fd_lock = threading.Lock()
        self._released = False  # shutdown() was called: the fds close once the job ended

    def bootup(self, argv: Sequence[str]) -> None:
        self._job = self._launcher.submit(self, argv)

    @property
    def pid(self) -> int:
        if self._job is None:
            raise RuntimeError("the worker's job was not submitted")
        return self._job

    @property
    def sentinel(self) -> int:
        return self._read

    def ended(self, state: str) -> None:
        """Called by the watcher: the job is over (``state`` in SLURM's words, which FluxBatchQueue uses too)."""
        self._state = state
        discard_key_file(self.env)  # gone already unless the job ended before its worker read it
        with self._fd_lock:
            self._ended.set()
            with contextlib.suppress(OSError):
                os.write(self._write, b"x")
            if self._released:
                self._close()

    def _close(self) -> None:
        """Close both ends of the sentinel pipe (with ``_fd_lock`` held); the hub watches its own duplicate."""
        for fd in (self._read, self._write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read = self._write = -1

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"{self._launcher.system.name} job {self._job}", timeout or 0.0)
        code = self.returncode
        assert code is not None
        return code

    def shutdown(self, wait: bool = True) -> int | None:
        """Cancel the job unless it ended (``wait``: until the watcher saw it end); release the sentinel."""
        if not self._ended.is_set() and self._job is not None:
            self._launcher.cancel(self._job)
            if wait:
                from xl_spawn import QueueWatcher

                self._ended.wait(2 * QueueWatcher.MAX_LATENCY + 60)
        with self._fd_lock:
            self._released = True
            if self._ended.is_set() or self._job is None:
                self._close()
        return self.returncode

    @property
    def returncode(self) -> int | None:
        if not self._ended.is_set():
            return None
        return 0 if self._state == "COMPLETED" else 1

    def describe(self) -> str:
        return f"{self._launcher.system.name} job {self._job} ({self._state or 'running'})"

    def stderr_tail(self, timeout: float = 2.0) -> str:
        """The end of the job's log, where the resource manager names a job's fate (time limit, memory, cancel)."""
        if self.job_directory is None:
            return ""
        return log_tail(os.path.join(self.job_directory, JOB_LOG_NAME), max_bytes=LOG_TAIL_BYTES)

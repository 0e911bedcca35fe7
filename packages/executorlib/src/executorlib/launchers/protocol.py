"""The two launcher protocols: how a socket-flow worker starts, and how a file-flow job runs a task file.

A launcher is chosen once per executor and handed to its scheduler; schedulers never know which resource manager
they run on. Each launcher module in this package pairs one of these protocols with a pure builder in xl-spawn
(an argv, a jobspec, a job script).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from xl_spawn import Spawner

from executorlib.resources import Resources
from executorlib.task_file import FileTask, JobEnd


class WorkerSpawner(Spawner, Protocol):
    """A worker's process as the schedulers see it: xl-spawn's Spawner and the tail of its stderr (a local
    :class:`~xl_spawn.SubprocessSpawner`, or a batch job standing in for the process)."""

    def stderr_tail(self, timeout: float = 2.0) -> str: ...


class Launcher(Protocol):
    """Starts the worker processes of the socket flow (``python -m xl_comm.worker``, on one rank or many)."""

    @property
    def same_host(self) -> bool:
        """Every worker runs on this host: the hub may rely on pids and the lifeline (see xl_comm.Hub)."""

    @property
    def keep_stderr(self) -> int:
        """Bytes of each worker's stderr kept (still copied to ours) for the message of a worker that died."""

    @property
    def enforces_run_time_max(self) -> bool:
        """The resource manager ends a worker that exceeds ``run_time_max`` (srun --time, a jobspec duration);
        False: the scheduler kills it."""

    @property
    def gpus(self) -> Sequence[str] | None:
        """Devices the scheduler hands out to workers (``CUDA_VISIBLE_DEVICES``); None: the resource manager
        assigns them."""

    def check(self, resources: Resources, *, where: str) -> None:
        """Reject, at submit time, a request this launcher cannot start (e.g. MPI ranks without mpi4py)."""

    def prestarts(self, resources: Resources) -> bool:
        """A worker for ``resources`` may be started before a task needs it (one-process-per-call mode keeps one
        ready): True only when an idle worker holds nothing a task or another user could need (no allocation in a
        resource manager, no MPI ranks spinning in a collective call)."""

    def argv(self, resources: Resources, worker_args: Sequence[str]) -> list[str]:
        """The command that starts one worker with ``resources``."""

    def key_directory(self, resources: Resources) -> str | None:
        """Where the worker's key file is made (see xl_comm.keys): a directory its host sees, or None for this
        host's temporary directory."""

    def spawner(self, resources: Resources, *, env: dict[str, str], keep_stderr: int) -> WorkerSpawner:
        """A spawner for one worker with ``resources``, in ``resources.cwd`` (not started yet: the scheduler calls
        ``bootup(argv)``)."""

    def close(self) -> None:
        """Stop what the launcher keeps running between workers (LocalLauncher's fork server); called by the
        scheduler once its last worker is reaped."""


class JobLauncher(Protocol):
    """Runs the task files of the file flow as jobs and reports each job's end to the scheduler's
    ``on_end(task, JobEnd)``."""

    #: the resource manager's name in messages ("SLURM", "local process", ...)
    name: str

    def bind(self, on_end: Callable[[FileTask, JobEnd], None], lock: threading.Lock) -> None:
        """Called once by the scheduler before any other method."""

    def check(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        """Reject at construction or submit() what this launcher cannot run (``extras``: job template variables)."""

    def start(self, task: FileTask, after: Sequence[FileTask]) -> None:
        """Run ``task.input_file`` once every task of ``after`` (still running) ended, set ``task.queue_id`` and
        record it (:func:`executorlib.task_file.record_queue_id`, or :func:`xl_cache.write_queue_id_file` to
        ``task.queue_id_file``) once the job has an id, so that a later executor can re-attach. Raises when the
        job cannot be submitted (nothing is then running)."""

    def job_script(self, task: FileTask, after: Sequence[FileTask]) -> str:
        """What ``start`` would submit for ``task`` (a job script, or a command line), submitting nothing."""

    def attach(self, task: FileTask) -> bool:
        """Watch the live job ``task.queue_id`` (started by an earlier executor); False if it is gone."""

    def cancel(self, task: FileTask) -> None:
        """Stop the job of ``task`` (its end is still reported through ``on_end``)."""

    def close(self, wait: bool) -> None:
        """Release threads and handles; jobs still running are left alone (they may be re-attached later)."""

    def info(self) -> dict[str, Any]: ...


def user_import_paths() -> list[str]:
    """Where this process finds modules that a fresh interpreter would not: the caller's working directory and
    the ``sys.path`` entries added by scripts, notebooks or pytest (multiprocessing's spawn mode hands the same to
    its children). Installed locations are left out, and so are the folders that ``.pth`` files of the site
    directories add (editable installs): the worker's interpreter has them already, and every entry in front of
    the standard library is searched by each of a worker's imports (nine entries instead of two cost a worker's
    start about 5 ms)."""
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    from_site = site_paths()
    paths = [os.getcwd()]
    for entry in sys.path:
        path = os.path.abspath(entry) if entry else os.getcwd()
        if path not in paths and path not in from_site and not path.startswith(installed) and os.path.isdir(path):
            paths.append(path)
    return paths


def site_paths() -> frozenset[str]:
    """The folders that the ``.pth`` files in this interpreter's site directories put on every interpreter's
    ``sys.path`` (as ``site`` reads them: one path per line, ``import`` lines and comments skipped)."""
    import site

    directories = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    found: set[str] = set()
    for directory in directories:
        found.update(_pth_paths(directory))
    return frozenset(found)


#: per site directory: its modification time and the paths its .pth files add (pip changes the time when it adds
#: or removes a .pth file, so a package installed meanwhile is seen)
_PTH_CACHE: dict[str, tuple[int, frozenset[str]]] = {}


def _pth_paths(directory: str) -> frozenset[str]:
    try:
        changed = os.stat(directory).st_mtime_ns
        cached = _PTH_CACHE.get(directory)
        if cached is not None and cached[0] == changed:
            return cached[1]
        names = sorted(name for name in os.listdir(directory) if name.endswith(".pth") and not name.startswith("."))
    except OSError:
        return frozenset()
    found: set[str] = set()
    for name in names:
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as lines:
                for line in lines:
                    line = line.rstrip()
                    if line and not line.startswith(("#", "import ", "import\t")):
                        found.add(os.path.abspath(os.path.join(directory, line)))
        except (OSError, UnicodeDecodeError):
            continue  # site skips an unreadable file too
    _PTH_CACHE[directory] = (changed, frozenset(found))
    return _PTH_CACHE[directory][1]

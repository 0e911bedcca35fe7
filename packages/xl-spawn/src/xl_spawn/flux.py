"""Flux jobs: a resource request as a jobspec (pure), and a spawner that runs one worker as a flux job.

:class:`FluxRequest` is what one job asks of the instance, checked against flux's own rules when it is made.
:func:`flux_job_plan` turns it, a command and an environment into a :class:`FluxJobPlan` (pure, no flux needed),
:func:`flux_jobspec_dict` renders that plan as the jobspec dict flux gets (pure), and :func:`flux_jobspec` makes a
``flux.job.JobspecV1`` of it. :class:`FluxJobSpawner` submits the
jobspec through a ``flux.job.FluxExecutor`` and behaves like :class:`xl_spawn.SubprocessSpawner`: a sentinel fd
that becomes readable when the job ends, ``poll``/``wait``/``shutdown``, an exit status, a description.

Facts of flux-core behind the choices (notes/flux.md): a jobspec's ``cwd`` defaults to the directory the
*broker* started in, so it is always set here; ``FluxExecutorFuture.cancel()`` cannot stop a submitted job, so
``shutdown`` calls ``flux.job.cancel``; a timeout, cancel, unsatisfiable request or failed exec is a
``flux.job.JobException`` whose ``type`` and ``note`` say what happened (its repr is empty).

The flux bindings are imported when a jobspec is built or a job submitted, never by ``import xl_spawn``; they
come with flux-core (conda-forge ``flux-core``/``flux-python``, spack), not from this package.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import shlex
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

__all__ = [
    "FLUX_LOG_NAMES",
    "FLUX_MISSING",
    "FluxJobFailure",
    "FluxJobPlan",
    "FluxJobSpawner",
    "FluxRequest",
    "flux_job_plan",
    "flux_jobspec",
    "flux_jobspec_dict",
    "import_flux",
]

logger = logging.getLogger(__name__)

#: What to do when the bindings are missing.
FLUX_MISSING = (
    "the flux python bindings are not importable: install flux-core with them (conda install -c conda-forge "
    "flux-core flux-python, or spack install flux-core) and run inside a flux instance (flux start, flux alloc)"
)
#: The stdout and stderr files of a job with log files, in its working directory (executorlib 1.x's names).
FLUX_LOG_NAMES = ("flux.out", "flux.err")
#: Urgency a job may have: 0 holds it, 16 is flux's default, 31 runs it first.
URGENCY_RANGE = (0, 31)
#: Exit status for a job that flux ended by an exception, as ``flux run`` reports them (128 + signal).
EXCEPTION_RETURNCODES = {"timeout": 128 + signal.SIGALRM, "cancel": 128 + signal.SIGTERM, "exec": 127}
#: Exit status for any other job exception (alloc: unsatisfiable, submission refused, ...).
OTHER_FAILURE_RETURNCODE = 1
#: Seconds ``bootup`` waits for flux to accept a submitted job (it takes milliseconds).
SUBMIT_TIMEOUT = 60.0
#: Seconds the exit hook waits, in all, for the jobs it cancels and for the shared FluxExecutor's threads.
EXIT_TIMEOUT = 5.0
#: Bytes of the job's stderr ``stderr_tail`` returns when the spawner was not told how many to keep.
DEFAULT_STDERR_TAIL = 8192

_DESCRIBE_MAX_CHARS = 120


def import_flux() -> Any:
    """``flux`` with ``flux.job`` loaded, or an ImportError that says how to get them."""
    try:
        import flux
        import flux.job
    except ImportError as missing:
        raise ImportError(FLUX_MISSING) from missing
    return flux


def _whole(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")


def _path(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, got {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text:
        raise ValueError(f"{name} must be a non-empty path, got {value!r}; use None for the default")
    return text


@dataclass(frozen=True)
class FluxRequest:
    """What one flux job asks of the instance. executorlib fills it from a ``resource_dict``
    (:meth:`from_resources`): ``tasks`` are the MPI ranks (``cores``), ``cores_per_task`` the threads of each
    (``threads_per_core``), ``duration`` the time limit in seconds (``run_time_max``), ``urgency`` flux's queue
    priority (``priority``, 0 to 31, default 16). ``stdout``/``stderr`` are files for the job's output (else it
    stays in the instance's KVS). ``pmi_mode`` is the job shell's ``pmi`` option (``simple``, ``pmi2``, ...).

    Flux's own rules are checked here, so a bad request fails when it is made, not inside flux:
    ``exclusive`` needs ``num_nodes``, and ``num_nodes`` cannot exceed ``tasks``.
    """

    tasks: int = 1
    cores_per_task: int = 1
    gpus_per_task: int = 0
    num_nodes: int | None = None
    exclusive: bool = False
    duration: float | None = None
    urgency: int | None = None
    cwd: str | None = None
    pmi_mode: str | None = None
    stdout: str | None = None
    stderr: str | None = None

    def __post_init__(self) -> None:
        _whole("tasks", self.tasks, 1)
        _whole("cores_per_task", self.cores_per_task, 1)
        _whole("gpus_per_task", self.gpus_per_task, 0)
        if self.num_nodes is not None:
            _whole("num_nodes", self.num_nodes, 1)
        if not isinstance(self.exclusive, bool):
            raise TypeError(f"exclusive must be a bool, got {self.exclusive!r}")
        if self.duration is not None:
            if isinstance(self.duration, bool) or not isinstance(self.duration, (int, float)):
                raise TypeError(f"duration must be a number of seconds, got {self.duration!r}")
            if not math.isfinite(self.duration) or self.duration <= 0:
                raise ValueError(
                    f"duration (run_time_max) must be a positive number of seconds, got {self.duration!r}; "
                    "use None for no limit"
                )
        if self.urgency is not None:
            _whole("urgency", self.urgency, 0)
            low, high = URGENCY_RANGE
            if not low <= self.urgency <= high:
                raise ValueError(
                    f"urgency (priority) must be between {low} and {high} (flux's range; 16 is the default, "
                    f"0 holds the job), got {self.urgency!r}"
                )
        for name in ("cwd", "stdout", "stderr"):
            object.__setattr__(self, name, _path(name, getattr(self, name)))
        if self.pmi_mode is not None:
            if not isinstance(self.pmi_mode, str):
                raise TypeError(f"pmi_mode must be a str, got {self.pmi_mode!r}")
            if not self.pmi_mode or any(char.isspace() for char in self.pmi_mode):
                raise ValueError(
                    f"pmi_mode must be one word such as 'simple', 'pmi2' or 'simple,pmi2', got {self.pmi_mode!r}"
                )
        if self.exclusive and self.num_nodes is None:
            raise ValueError(
                "exclusive=True needs num_nodes: flux allocates whole nodes only for a node count; "
                "set num_nodes or drop exclusive"
            )
        if self.num_nodes is not None and self.num_nodes > self.tasks:
            raise ValueError(
                f"num_nodes={self.num_nodes} is more than tasks (cores) = {self.tasks}: flux places at least one "
                "task on every node; ask for at least as many cores as nodes, or fewer nodes"
            )

    @classmethod
    def from_resources(
        cls,
        *,
        cores: int = 1,
        threads_per_core: int = 1,
        gpus_per_core: int = 0,
        num_nodes: int | None = None,
        exclusive: bool = False,
        run_time_max: float | None = None,
        priority: int | None = None,
        cwd: str | os.PathLike[str] | None = None,
        pmi_mode: str | None = None,
    ) -> FluxRequest:
        """The request for executorlib's ``resource_dict`` names."""
        return cls(
            tasks=cores,
            cores_per_task=threads_per_core,
            gpus_per_task=gpus_per_core,
            num_nodes=num_nodes,
            exclusive=exclusive,
            duration=run_time_max,
            urgency=priority,
            cwd=None if cwd is None else os.fspath(cwd),
            pmi_mode=pmi_mode,
        )


@dataclass(frozen=True)
class FluxJobPlan:
    """Everything a jobspec and its submission get, decided without flux (see :func:`flux_job_plan`)."""

    command: tuple[str, ...]
    num_tasks: int
    cores_per_task: int
    gpus_per_task: int | None
    num_nodes: int | None
    exclusive: bool
    duration: float | None
    cwd: str
    environment: Mapping[str, str]
    shell_options: tuple[tuple[str, str], ...]
    stdout: str | None
    stderr: str | None
    nested: bool
    urgency: int | None

    def submit_kwargs(self) -> dict[str, int]:
        """Keyword arguments of ``FluxExecutor.submit``/``flux.job.submit`` (urgency is not in the jobspec)."""
        return {} if self.urgency is None else {"urgency": self.urgency}


def flux_job_plan(
    request: FluxRequest,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    nested: bool = False,
) -> FluxJobPlan:
    """The plan of the job that runs ``command`` with ``request`` (pure).

    The environment is ``env`` laid over ``environ`` (default: ``os.environ`` now). The working directory is
    ``request.cwd``, else ``cwd``, else this process's: it is always explicit, since flux would run the job in
    the broker's directory. ``nested`` runs ``command`` as the initial program of a flux instance of its own
    on the job's resources (one broker per node, as ``flux alloc`` does; ``flux_executor_nesting``).
    """
    if not isinstance(request, FluxRequest):
        raise TypeError(f"request must be a FluxRequest, got {request!r}")
    if isinstance(command, str):
        raise TypeError(f"command must be a sequence of strings, not a string: {command!r}; wrap it in a list")
    if len(command) == 0:
        raise ValueError("command is empty: pass the program to run, e.g. [sys.executable, '-m', 'module']")
    bad = [arg for arg in command if not isinstance(arg, str)]
    if bad:
        raise TypeError(f"every command argument must be a str, got {bad[0]!r}; convert it with str() first")
    environment = dict(os.environ if environ is None else environ)
    environment.update(env or {})
    workdir = request.cwd or _path("cwd", cwd) or os.getcwd()
    options: list[tuple[str, str]] = []
    if request.pmi_mode is not None:
        options.append(("pmi", request.pmi_mode))
    return FluxJobPlan(
        command=tuple(command),
        num_tasks=request.tasks,
        cores_per_task=request.cores_per_task,
        gpus_per_task=request.gpus_per_task or None,
        num_nodes=request.num_nodes,
        exclusive=request.exclusive,
        duration=request.duration,
        cwd=os.path.abspath(workdir),
        environment=environment,
        shell_options=tuple(options),
        stdout=request.stdout,
        stderr=request.stderr,
        nested=bool(nested),
        urgency=request.urgency,
    )


def _resource(kind: str, count: int, children: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": kind, "count": count}
    if children:
        resource["with"] = children
    return resource


def flux_jobspec_dict(plan: FluxJobPlan) -> dict[str, Any]:
    """The version-1 jobspec (RFC 14/25) of ``plan`` as a JSON-ready dict (pure, no flux needed).

    It is what ``JobspecV1.from_command`` (``from_nest_command`` when ``plan.nested``) builds and the setters for
    cwd, environment, duration, shell options and output files add: ``slot`` ("task") with ``core`` and ``gpu``
    children, inside ``node`` when there is a node count; one task per slot, or a ``total`` when the tasks do
    not divide evenly over the nodes; ``attributes.system`` with ``duration`` (0 is no limit), ``cwd``,
    ``environment`` and ``shell.options``. Urgency is not part of a jobspec: it goes with the submission
    (:meth:`FluxJobPlan.submit_kwargs`). tests/flux compares this dict with the bindings' own.
    """
    children = [_resource("core", plan.cores_per_task)]
    if plan.gpus_per_task:
        children.append(_resource("gpu", plan.gpus_per_task))
    count: dict[str, int] = {"per_slot": 1}
    if plan.num_nodes is None:
        top = {**_resource("slot", plan.num_tasks, children), "label": "task"}
    else:
        # flux spreads the slots over the nodes; an uneven split keeps the exact task count as a total
        slots = -(-plan.num_tasks // plan.num_nodes)
        if plan.num_tasks % plan.num_nodes:
            count = {"total": plan.num_tasks}
        top = _resource("node", plan.num_nodes, [{**_resource("slot", slots, children), "label": "task"}])
        if plan.exclusive:
            top["exclusive"] = True
    options: dict[str, Any] = {}
    command = list(plan.command)
    if plan.nested:  # a flux instance of its own: one broker per node, its initial program is the command
        command = ["flux", "broker", *command]
        options.update({"per-resource": {"type": "node"}, "mpi": "none", "exit-timeout": "none"})
    for key, value in plan.shell_options:  # a dotted key nests, as JobspecV1.setattr_shell_option does
        *parents, leaf = key.split(".")
        branch = options
        for part in parents:
            branch = branch.setdefault(part, {})
        branch[leaf] = value
    output = {
        name: {"type": "file", "path": path}
        for name, path in (("stdout", plan.stdout), ("stderr", plan.stderr))
        if path is not None
    }
    if output:
        options["output"] = output
    system: dict[str, Any] = {
        "duration": 0 if plan.duration is None else float(plan.duration),
        "cwd": plan.cwd,
        "environment": dict(plan.environment),
    }
    if options:
        system["shell"] = {"options": options}
    return {
        "resources": [top],
        "tasks": [{"command": command, "slot": "task", "count": count}],
        "attributes": {"system": system},
        "version": 1,
    }


def flux_jobspec(plan: FluxJobPlan) -> Any:
    """A ``flux.job.JobspecV1`` of :func:`flux_jobspec_dict` (needs the flux bindings, which validate it)."""
    return import_flux().job.JobspecV1(**flux_jobspec_dict(plan))


@dataclass(frozen=True)
class FluxJobFailure:
    """A job flux ended by an exception (or could not submit): flux's exception ``type`` (``timeout``,
    ``cancel``, ``alloc``, ``exec``, ... or ``submit``) and its ``note``."""

    type: str
    note: str

    def describe(self) -> str:
        return f"flux job exception type={self.type}: {self.note}" if self.note else f"flux job exception {self.type}"


def _failure(error: BaseException) -> FluxJobFailure:
    kind = getattr(error, "type", None)
    if isinstance(kind, str) and kind:
        return FluxJobFailure(kind, str(getattr(error, "note", "") or ""))
    return FluxJobFailure("submit", f"{type(error).__name__}: {error}")


_shared_lock = threading.Lock()
_shared_executor: Any = None
_live_spawners: weakref.WeakSet[FluxJobSpawner] = weakref.WeakSet()  # submitted, not shut down yet
_exit_hook_registered = False


def _shared_flux_executor() -> Any:
    """One FluxExecutor for every spawner not given one (its threads are daemons; one handle, one watcher)."""
    global _shared_executor
    with _shared_lock:
        if _shared_executor is None:
            _shared_executor = import_flux().job.FluxExecutor(thread_name_prefix="xl-spawn-flux")
        return _shared_executor


def _track(spawner: FluxJobSpawner) -> None:
    """Remember a submitted job for the exit hook, registering the hook on the first one.

    The hook is registered after the FluxExecutor that submitted exists, so it runs before the executor's own
    exit finalizer (atexit runs last-registered first), which would otherwise join its threads until every job
    has ended: a process leaving a worker job behind would wait for it, however long it runs."""
    global _exit_hook_registered
    with _shared_lock:
        _live_spawners.add(spawner)
        if not _exit_hook_registered:
            atexit.register(_stop_at_exit)
            _exit_hook_registered = True


def _stop_at_exit() -> None:
    """At interpreter exit: cancel the jobs of spawners nobody shut down and stop the shared FluxExecutor,
    waiting :data:`EXIT_TIMEOUT` seconds in all; whatever has not ended by then is left to flux."""
    deadline = time.monotonic() + EXIT_TIMEOUT
    with _shared_lock:
        spawners = [spawner for spawner in list(_live_spawners) if not spawner._ended.is_set()]
        executor = _shared_executor
    for spawner in spawners:
        try:
            spawner._signal("cancel")
        except Exception as problem:  # the bindings or the instance broke: the others still get theirs
            logger.warning("could not cancel %s at exit: %r", spawner.describe(), problem)
    for spawner in spawners:
        if not spawner._ended.wait(max(0.0, deadline - time.monotonic())):
            logger.warning("%s did not end within %.1f s of exit; flux keeps it", spawner.describe(), EXIT_TIMEOUT)
    if executor is None:
        return
    # FluxExecutor.shutdown(wait=True) joins until every job it watches has ended: run it where it can be left.
    stopper = threading.Thread(target=executor.shutdown, name="xl-spawn-flux-exit", daemon=True)
    stopper.start()
    stopper.join(max(0.0, deadline - time.monotonic()))
    if stopper.is_alive():
        # Its finalizer (flux's private weakref.finalize) would join the same threads at exit without a bound.
        finalizer = getattr(executor, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        logger.warning("the shared FluxExecutor still watches jobs %.1f s after exit; not waiting", EXIT_TIMEOUT)


class FluxJobSpawner:
    """Run a worker's argv as one flux job; the :class:`xl_spawn.Spawner` protocol plus ``stderr_tail``.

    ``request`` sizes the job; ``cwd`` (when the request has none) and ``env`` (laid over ``os.environ`` at
    ``bootup``) are what executorlib passes every spawner. ``flux_executor`` is a ``flux.job.FluxExecutor`` of the
    caller's (executorlib's ``flux_executor``); without one a shared executor of this module submits.
    ``nested`` makes the job a flux instance of its own that runs argv (``flux_executor_nesting``). ``log_files``
    writes the job's stdout and stderr to :data:`FLUX_LOG_NAMES` in its working directory (``flux_log_files``).

    ``pid`` is the job id. The ``sentinel`` is the read end of a pipe that gets one byte from the job future's
    done-callback, so it sits in ``select``/``zmq.Poller`` next to sockets. ``returncode`` is the job's exit
    status; a job flux ended by an exception gets 142 for a timeout, 143 for a cancel, 127 for a failed exec and
    1 otherwise (alloc, refused submission), and ``describe()`` names flux's exception type and note.
    ``shutdown`` cancels the job (``flux.job.cancel``), SIGKILLs it after ``terminate_timeout`` seconds, and
    closes the sentinel.
    """

    def __init__(
        self,
        request: FluxRequest | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        keep_stderr: int = 0,
        flux_executor: Any = None,
        nested: bool = False,
        log_files: bool = False,
        terminate_timeout: float = 5.0,
    ) -> None:
        if request is None:
            request = FluxRequest()
        if not isinstance(request, FluxRequest):
            raise TypeError(f"request must be a FluxRequest, got {request!r}")
        if isinstance(keep_stderr, bool) or not isinstance(keep_stderr, int) or keep_stderr < 0:
            raise ValueError(f"keep_stderr must be a number of bytes >= 0, got {keep_stderr!r}")
        if not (isinstance(terminate_timeout, (int, float)) and math.isfinite(terminate_timeout)) or (
            terminate_timeout < 0
        ):
            raise ValueError(f"terminate_timeout must be a finite number of seconds >= 0, got {terminate_timeout!r}")
        if flux_executor is not None and not callable(getattr(flux_executor, "submit", None)):
            raise TypeError(f"flux_executor must be a flux.job.FluxExecutor, got {flux_executor!r}")
        self._request = request
        self._cwd = _path("cwd", cwd)
        self._env = dict(env) if env is not None else {}
        self._keep_stderr = keep_stderr or DEFAULT_STDERR_TAIL
        self._executor = flux_executor
        self._nested = bool(nested)
        self._log_files = bool(log_files)
        self._terminate_timeout = float(terminate_timeout)
        self._plan: FluxJobPlan | None = None
        self._future: Future[int] | None = None
        self._jobid: int | None = None
        self._returncode: int | None = None
        self._failure: FluxJobFailure | None = None
        self._ended = threading.Event()
        self._fd_lock = threading.Lock()  # guards the sentinel's fds against close-while-written
        self._sentinel: int | None = None
        self._write_fd: int | None = None
        self._stop_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stopped = False
        self._shutdown_called = False
        self._background: threading.Thread | None = None

    # -- start ---------------------------------------------------------------------------------------------

    def bootup(self, argv: Sequence[str]) -> None:
        """Submit ``argv`` as a job and wait until flux has accepted it (its id is known). A refused submission
        raises here; an unsatisfiable request ends the job at once (type ``alloc``), seen through the sentinel."""
        if self._future is not None:
            raise RuntimeError(f"bootup() was already called for {self.describe()}; use a new FluxJobSpawner")
        if self._shutdown_called:
            raise RuntimeError("bootup() after shutdown(); use a new FluxJobSpawner")
        if isinstance(argv, str) or not argv or not all(isinstance(arg, str) for arg in argv):
            raise ValueError(f"argv must be a non-empty sequence of strings, got {argv!r}")
        request = self._request
        workdir = request.cwd or self._cwd or os.getcwd()
        if self._log_files and request.stdout is None and request.stderr is None:
            out, err = (os.path.join(os.path.abspath(workdir), name) for name in FLUX_LOG_NAMES)
            request = replace(request, stdout=out, stderr=err)
        plan = flux_job_plan(request, list(argv), env=self._env, cwd=workdir, nested=self._nested)
        os.makedirs(plan.cwd, mode=0o700, exist_ok=True)
        jobspec = flux_jobspec(plan)
        executor = self._executor if self._executor is not None else _shared_flux_executor()
        read_fd, write_fd = os.pipe()
        self._sentinel, self._write_fd, self._plan = read_fd, write_fd, plan
        try:
            future = executor.submit(jobspec, **plan.submit_kwargs())
            self._future = future
            future.add_done_callback(self._on_done)
            try:
                self._jobid = int(future.jobid(timeout=SUBMIT_TIMEOUT))
            except TimeoutError as slow:
                raise RuntimeError(
                    f"flux did not accept the job {self._command_text()} within {SUBMIT_TIMEOUT} s; is the "
                    f"instance at FLUX_URI={os.environ.get('FLUX_URI', '(unset)')} alive?"
                ) from slow
            except Exception as refused:  # flux refused the jobspec: there is no job
                raise RuntimeError(f"flux refused the job {self._command_text()}: {_failure(refused).note}") from (
                    refused
                )
        except BaseException:
            self._shutdown_called = True
            self._close_sentinel()
            raise
        _track(self)
        logger.debug("submitted %s", self.describe())

    def _on_done(self, future: Future[int]) -> None:
        """The job ended (on the FluxExecutor's thread): record how, then make the sentinel readable."""
        error = future.exception()
        if error is None:
            self._returncode = int(future.result())
        else:
            self._failure = _failure(error)
            self._returncode = EXCEPTION_RETURNCODES.get(self._failure.type, OTHER_FAILURE_RETURNCODE)
        self._ended.set()
        with self._fd_lock:
            if self._write_fd is not None:
                # One byte, not just EOF: a pipe at EOF polls as POLLHUP only, which zmq.Poller reports as an
                # error instead of POLLIN.
                with contextlib.suppress(OSError):
                    os.write(self._write_fd, b"x")
                os.close(self._write_fd)
                self._write_fd = None

    # -- observe -------------------------------------------------------------------------------------------

    def _started(self, what: str) -> Future[int]:
        if self._future is None:
            raise RuntimeError(f"{what} needs a submitted job; call bootup(argv) first")
        return self._future

    @property
    def pid(self) -> int:
        """The flux job id (an int; ``flux.job.JobID(pid).f58`` is how flux prints it)."""
        self._started("pid")
        assert self._jobid is not None
        return self._jobid

    @property
    def jobid(self) -> int:
        return self.pid

    @property
    def sentinel(self) -> int:
        """An fd that becomes readable when the job has ended; closed by ``shutdown``."""
        self._started("sentinel")
        fd = self._sentinel
        if fd is None:
            raise RuntimeError(f"the sentinel of {self.describe()} was closed by shutdown()")
        return fd

    @property
    def returncode(self) -> int | None:
        """The job's exit status once it has ended (see the class docstring for jobs ended by flux)."""
        return self._returncode if self._ended.is_set() else None

    @property
    def failure(self) -> FluxJobFailure | None:
        """How flux ended the job, when it was a job exception (timeout, cancel, alloc, exec, ...)."""
        return self._failure if self._ended.is_set() else None

    def poll(self) -> int | None:
        self._started("poll()")
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the job ends; raise ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        self._started("wait()")
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(list(self._plan.command if self._plan else ()), timeout or 0.0)
        assert self._returncode is not None
        return self._returncode

    def stderr_tail(self, timeout: float = 2.0) -> str:
        """The end of the job's stderr (its file with log files, else what the instance kept), followed by flux's
        exception when it ended the job. Up to ``keep_stderr`` bytes (:data:`DEFAULT_STDERR_TAIL` if 0)."""
        if self._future is None:
            return ""
        text = ""
        plan = self._plan
        try:
            if plan is not None and plan.stderr is not None:
                with open(plan.stderr, "rb") as handle:
                    handle.seek(0, os.SEEK_END)
                    handle.seek(max(0, handle.tell() - self._keep_stderr))
                    text = handle.read().decode("utf-8", errors="replace")
            elif self._jobid is not None:
                text = _job_stderr(self._jobid, timeout)[-self._keep_stderr :]
        except Exception as problem:  # the instance is gone, or the file was removed: the failure still counts
            logger.debug("no stderr of %s: %r", self.describe(), problem)
        failure = self.failure
        if failure is not None:
            text = f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{failure.describe()}\n"
        return text

    def describe(self) -> str:
        """``"flux job ƒ2X5Zyb (python -m xl_comm.worker)"``, plus flux's exception once it ended the job."""
        if self._future is None or self._plan is None:
            return "a flux job not submitted yet"
        name = str(self._jobid) if self._jobid is not None else "(not accepted)"
        with contextlib.suppress(Exception):
            name = import_flux().job.JobID(self._jobid).f58
        text = f"flux job {name} ({self._command_text()})"
        failure = self.failure
        return f"{text}: {failure.describe()}" if failure is not None else text

    def _command_text(self) -> str:
        if self._plan is None:
            return ""
        command = shlex.join([os.path.basename(self._plan.command[0]), *self._plan.command[1:]])
        if len(command) > _DESCRIBE_MAX_CHARS:
            command = command[: _DESCRIBE_MAX_CHARS - 3] + "..."
        return command

    # -- stop ----------------------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> int | None:
        """Cancel the job unless it ended, wait for its end (SIGKILL after ``terminate_timeout``), close the
        sentinel; idempotent. ``wait=False`` does that in a daemon thread. Returns the exit status or None."""
        self._shutdown_called = True
        if self._future is None:
            return None
        if wait:
            self._stop()
        else:
            with self._state_lock:
                if self._stopped or self._background is not None:
                    return self.returncode
                thread = threading.Thread(target=self._stop, name=f"xl-spawn-flux-stop-{self._jobid}", daemon=True)
                self._background = thread
            thread.start()
        return self.returncode

    def _stop(self) -> None:
        with self._stop_lock:
            if self._stopped:
                return
            if not self._ended.is_set() and self._jobid is not None:
                logger.debug("cancelling %s", self.describe())
                self._signal("cancel")
                if not self._ended.wait(self._terminate_timeout):
                    logger.debug("killing %s after %.1f s", self.describe(), self._terminate_timeout)
                    self._signal("kill")
                    self._ended.wait()
            self._close_sentinel()
            self._stopped = True
        with _shared_lock:
            _live_spawners.discard(self)
        logger.debug("%s ended", self.describe())

    def _signal(self, how: str) -> None:
        flux = import_flux()
        try:
            handle = flux.Flux()
            if how == "cancel":
                flux.job.cancel(handle, self._jobid, "xl-spawn: shutdown")
            else:
                flux.job.kill(handle, self._jobid, signal.SIGKILL)
        except OSError as gone:  # it ended meanwhile (inactive jobs cannot be cancelled)
            logger.debug("%s of %s: %r", how, self.describe(), gone)

    def _close_sentinel(self) -> None:
        with self._fd_lock:
            for name in ("_sentinel", "_write_fd"):
                fd = getattr(self, name)
                setattr(self, name, None)
                if fd is not None:
                    os.close(fd)

    def __enter__(self) -> FluxJobSpawner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<FluxJobSpawner {self.describe()} returncode={self.returncode}>"


def _job_stderr(jobid: int, timeout: float) -> str:
    """What the instance kept of a job's stderr (flux's log lines included); waits up to ``timeout`` for the
    output to be complete when the job has ended."""
    flux = import_flux()
    from flux.job.output import job_output

    result: list[str] = []

    def fetch() -> None:  # a handle belongs to the thread that uses it
        result.append(job_output(flux.Flux(), jobid, nowait=True).stderr)

    thread = threading.Thread(target=fetch, name=f"xl-spawn-flux-stderr-{jobid}", daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else ""

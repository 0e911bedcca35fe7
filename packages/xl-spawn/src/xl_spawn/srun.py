"""SLURM job steps: the ``srun`` command line for a resource request, and naming how a step ended (pure)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence

from xl_spawn.exitcodes import describe_returncode

__all__ = ["SrunRequest", "describe_srun_exit", "parse_slurm_state", "srun_argv", "srun_time_minutes"]


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")


def _flag_value(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r}")
    if not value or any(char.isspace() for char in value):
        raise ValueError(f"{name} must be one word such as 'pmi2' or 'pmix', got {value!r}")


def srun_time_minutes(seconds: float) -> int:
    """``--time`` for a limit of ``seconds``: whole minutes, rounded up, at least 1.

    SLURM's limit has minute granularity and ``--time=0`` means no limit at all, so rounding down would either
    cut the run short or lift the limit.

    >>> srun_time_minutes(60), srun_time_minutes(61), srun_time_minutes(5)
    (1, 2, 1)
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"run_time_max must be a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"run_time_max must be a positive number of seconds, got {seconds!r}; use None for no limit")
    return max(1, math.ceil(seconds / 60))


@dataclasses.dataclass(frozen=True)
class SrunRequest:
    """What one ``srun`` step asks of the allocation; executorlib maps a ``resource_dict`` onto these fields.

    ``cores`` is the number of tasks (MPI ranks), ``threads_per_core`` the CPUs of each task. ``overcommit``
    allows more tasks than the allocation has CPUs (``srun --overcommit``; ``--oversubscribe`` does not do
    that, see notes/slurm.md). ``extra_args`` (executorlib's ``slurm_cmd_args``) come after the built flags, so
    for an option srun reads once, the user's value wins. ``exact`` (``--exact``) lets steps share an
    allocation; the one step of a batch job sized for it (file mode) leaves it out and gets the whole job.
    """

    cores: int = 1
    threads_per_core: int = 1
    gpus_per_core: int = 0
    num_nodes: int | None = None
    exclusive: bool = False
    run_time_max: float | None = None
    pmi_mode: str | None = None
    cwd: str | os.PathLike[str] | None = None
    overcommit: bool = False
    extra_args: Sequence[str] = ()
    exact: bool = True

    def __post_init__(self) -> None:
        _positive_int("cores", self.cores)
        _positive_int("threads_per_core", self.threads_per_core)
        _positive_int("gpus_per_core", self.gpus_per_core, minimum=0)
        if self.num_nodes is not None:
            _positive_int("num_nodes", self.num_nodes)
        for name in ("exclusive", "overcommit", "exact"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.run_time_max is not None:
            srun_time_minutes(self.run_time_max)
        if self.pmi_mode is not None:
            _flag_value("pmi_mode", self.pmi_mode)
        if self.cwd is not None:
            if not isinstance(self.cwd, (str, os.PathLike)):
                raise TypeError(f"cwd must be a path, got {self.cwd!r}")
            # A path object becomes its string once, so the request compares and hashes by value.
            object.__setattr__(self, "cwd", os.fspath(self.cwd))
            if not self.cwd:
                raise ValueError("cwd must not be empty; use None for the current directory")
        if isinstance(self.extra_args, str):
            raise TypeError(
                f"extra_args must be a sequence of strings, not a string: {self.extra_args!r}; wrap it in a list"
            )
        extra = tuple(self.extra_args)
        bad = [arg for arg in extra if not isinstance(arg, str)]
        if bad:
            raise TypeError(f"every extra argument must be a str, got {bad[0]!r}")
        object.__setattr__(self, "extra_args", extra)


def srun_argv(request: SrunRequest, command: Sequence[str], *, srun: str = "srun") -> list[str]:
    """The argv that runs ``command`` as one job step: ``srun [flags] [extra_args] command``.

    Always ``--ntasks`` and ``--cpus-per-task`` (srun does not take it from the job, see notes/slurm.md), and
    unless ``request.exact`` is false ``--exact`` (a step gets only the CPUs it asks for, so concurrent steps
    share the allocation instead of queueing one after another); the other flags only when requested.

    >>> srun_argv(SrunRequest(cores=2, run_time_max=90, pmi_mode="pmi2"), ["python", "-m", "w"])
    ['srun', '--ntasks=2', '--cpus-per-task=1', '--exact', '--time=2', '--mpi=pmi2', 'python', '-m', 'w']
    """
    if not isinstance(request, SrunRequest):
        raise TypeError(f"request must be an SrunRequest, got {request!r}")
    if isinstance(command, str):
        raise TypeError(f"command must be a sequence of strings, not a string: {command!r}; wrap it in a list")
    if len(command) == 0:
        raise ValueError("command is empty: pass the program to launch, e.g. [sys.executable, '-m', 'module']")
    bad = [arg for arg in command if not isinstance(arg, str)]
    if bad:
        raise TypeError(f"every command argument must be a str, got {bad[0]!r}; convert it with str() first")
    if not isinstance(srun, str) or not srun:
        raise ValueError(f"srun must be a non-empty path or name such as 'srun', got {srun!r}")
    argv = [srun, f"--ntasks={request.cores}", f"--cpus-per-task={request.threads_per_core}"]
    if request.gpus_per_core > 0:
        argv.append(f"--gpus-per-task={request.gpus_per_core}")
    if request.num_nodes is not None:
        argv.append(f"--nodes={request.num_nodes}")
    if request.exclusive:
        argv.append("--exclusive")
    if request.exact:
        argv.append("--exact")
    if request.overcommit:
        argv.append("--overcommit")
    if request.run_time_max is not None:
        argv.append(f"--time={srun_time_minutes(request.run_time_max)}")
    if request.pmi_mode is not None:
        argv.append(f"--mpi={request.pmi_mode}")
    if request.cwd is not None:
        argv.append(f"--chdir={request.cwd}")
    return [*argv, *request.extra_args, *command]


# slurmstepd (relayed by srun) and srun print "*** JOB 13 ON node CANCELLED AT <time> DUE TO TIME LIMIT ***";
# older releases leave out "ON node". scancel gives the same banner without "DUE TO".
_BANNER = re.compile(r"\*\*\*\s*(?:JOB|STEP)\s+\S+(?:\s+ON\s+\S+)?\s+(CANCELLED AT .*?|FAILED .*?)\s*\*\*\*", re.I)
_DUE_TO = (
    ("TIME LIMIT", "TIMEOUT"),
    ("PREEMPTION", "PREEMPTED"),
    ("NODE FAILURE", "NODE_FAIL"),
    ("JOB REQUEUE", "REQUEUED"),
)
_OOM = re.compile(r"oom[-_ ]kill|out of memory", re.I)
_LAUNCH_FAILED = re.compile(r"Unable to (?:create step|allocate resources)[^:\n]*:\s*(.*)", re.I)

_HINTS = {
    "TIMEOUT": "it ran past its time limit; raise run_time_max (whole minutes, rounded up) or the job's --time",
    "PREEMPTED": "a job of higher priority preempted it",
    "NODE_FAIL": "a node failed; the slurmctld log has the details",
    "REQUEUED": "the job was requeued",
    "OUT_OF_MEMORY": "the out-of-memory handler killed a task; request more memory or use less",
    "CANCELLED": "it was cancelled (scancel, an administrator, or the end of the allocation)",
    "FAILED": "SLURM reports a non-zero exit code or another failure",
    "LAUNCH_FAILED": "srun could not start the step; ask for fewer cores or nodes, or allow overcommit",
}


def parse_slurm_state(text: str) -> str | None:
    """The SLURM state named in srun's output, as sacct spells it, or None if it names none.

    One of TIMEOUT, PREEMPTED, NODE_FAIL, REQUEUED, OUT_OF_MEMORY, CANCELLED, FAILED, or LAUNCH_FAILED (srun
    could not create the step, e.g. "More processors requested than permitted").

    >>> parse_slurm_state("slurmstepd: error: *** STEP 7.0 ON n1 CANCELLED AT 2026-01-01T10:00 DUE TO TIME LIMIT ***")
    'TIMEOUT'
    >>> parse_slurm_state("srun: error: *** STEP 7.0 ON n1 CANCELLED AT 2026-01-01T10:00:00 ***")
    'CANCELLED'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {text!r}")
    banners = [match.group(1).upper() for match in _BANNER.finditer(text)]
    for marker, state in _DUE_TO:
        if any(f"DUE TO {marker}" in banner for banner in banners):
            return state
    if _OOM.search(text):
        return "OUT_OF_MEMORY"
    if any(banner.startswith("CANCELLED") for banner in banners):
        return "CANCELLED"
    if banners:
        return "FAILED"
    if _LAUNCH_FAILED.search(text):
        return "LAUNCH_FAILED"
    return None


def describe_srun_exit(returncode: int, output: str) -> str:
    """An error text for an srun step that ended: its exit status, and the SLURM state if its output names one.

    >>> print(describe_srun_exit(-9, "srun: error: *** STEP 3.1 ON n1 CANCELLED AT 2026-01-01T10:00:00 ***"))
    SIGKILL(-9); SLURM state CANCELLED: it was cancelled (scancel, an administrator, or the end of the allocation)
    """
    status = describe_returncode(returncode)
    state = parse_slurm_state(output)
    if state is None:
        return status
    hint = _HINTS[state]
    if state == "LAUNCH_FAILED":
        match = _LAUNCH_FAILED.search(output)
        if match is not None and match.group(1).strip():
            hint = f"{match.group(1).strip()}: {hint}"
    return f"{status}; SLURM state {state}: {hint}"

"""What every batch queue shares (``sbatch`` and ``flux batch``): job states, the submission error, running a
queue command, job script templates and their variables, and submission through pysqa.

:mod:`xl_spawn.sbatch` and :mod:`xl_spawn.flux_batch` build on these and add their scheduler's commands, default
template and rules (SLURM rounds the time limit to minutes and joins dependencies with colons; flux keeps
seconds and writes one dependency per line). State names are SLURM's spelling; flux's are mapped onto them, so
the one :class:`xl_spawn.QueueWatcher` reads both.

jinja2 (and pysqa for a ``pysqa_config_directory``) come with ``pip install "xl-spawn[pysqa]"``.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FAILED_STATES",
    "FINAL_STATES",
    "JOB_LOG_NAME",
    "JobState",
    "PysqaSubmitter",
    "SubmissionError",
    "base_script_variables",
    "check_run_time_max",
    "pysqa_template_variables",
    "render_template",
    "run_queue_command",
    "template_names",
]

#: The job's output (stdout and stderr) in its working directory, as the default templates name it; executorlib
#: 1.x's templates use the same name, and its readers (a dead job's log tail) take it from here.
JOB_LOG_NAME = "time.out"

#: States after which a job never changes again.
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
#: Final states in which the job did not end on its own.
FAILED_STATES = FINAL_STATES - {"COMPLETED"}


@dataclass(frozen=True)
class JobState:
    """A job's state as the queue reported it (SLURM's names) and the queue's reason or exception text."""

    state: str
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def never_runs(self) -> bool:
        """Pending on a dependency that failed: without ``kill_invalid_depend`` it would wait forever."""
        return self.state == "PENDING" and self.reason == "DependencyNeverSatisfied"


class SubmissionError(subprocess.CalledProcessError):
    """A queue command (``sbatch``, ``flux batch``, ...) failed: ``output`` holds the command's own message (as
    executorlib 1.x's ``CalledProcessError.output``), and ``str()`` shows it too."""

    def __str__(self) -> str:
        text = (self.output or "").strip() if isinstance(self.output, str) else ""
        return f"{super().__str__()}: {text}" if text else super().__str__()


def run_queue_command(argv: Sequence[str], *, cwd: str | None = None, timeout: float = 60.0) -> str:
    """Run a queue command and return its output (stdout and stderr merged); raise :class:`SubmissionError`
    with that output when it fails, or with exit status 127 when the command is not installed."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
    except FileNotFoundError as missing:
        raise SubmissionError(127, list(argv), output=f"{argv[0]}: command not found ({missing})") from missing
    if done.returncode != 0:
        raise SubmissionError(done.returncode, list(argv), output=done.stdout)
    return done.stdout


def check_run_time_max(seconds: object) -> float:
    """``seconds`` when it is a usable time limit (a positive, finite number), else a TypeError/ValueError."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"run_time_max must be a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"run_time_max must be a positive number of seconds, got {seconds!r}")
    return seconds


def base_script_variables(
    *,
    job_name: str,
    working_directory: str,
    command: str,
    cores: int,
    dependency: list[str],
    run_time_max: float | None,
    memory_max: float | int | None,
    partition: str | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The variables of a job script under pysqa's names, ``extra`` first so the named ones win. ``dependency``
    (also given as pysqa's ``dependency_list``) and ``run_time_max`` are taken as the scheduler wants them."""
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be an int >= 1, got {cores!r}")
    variables: dict[str, Any] = dict(extra or {})
    variables.update(
        job_name=job_name,
        working_directory=working_directory,
        command=command,
        cores=cores,
        dependency=dependency,
        dependency_list=dependency,
        run_time_max=run_time_max,
        memory_max=memory_max,
        partition=partition,
    )
    return variables


def _jinja2() -> Any:
    try:
        import jinja2
        import jinja2.meta
    except ImportError as missing:  # pragma: no cover - depends on the installation
        raise ImportError('job scripts are jinja2 templates: pip install "xl-spawn[pysqa]"') from missing
    return jinja2


def render_template(template: str, variables: Mapping[str, Any]) -> str:
    """A job script: the jinja2 ``template`` filled in, ending with a newline."""
    text: str = _jinja2().Template(template).render(**variables)
    return text if text.endswith("\n") else text + "\n"


def template_names(template: str) -> frozenset[str]:
    """The variables the jinja2 ``template`` reads. Raises ``jinja2.TemplateSyntaxError`` for a broken one."""
    jinja2 = _jinja2()
    parsed = jinja2.Environment().parse(template)
    return frozenset(jinja2.meta.find_undeclared_variables(parsed))


def pysqa_template_variables(directory: str) -> frozenset[str] | None:
    """The variables of every queue's template in a pysqa configuration directory (``queue.yaml``, each queue's
    ``script``); None when the directory has no ``queue.yaml`` this can read (then nothing can be checked)."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - pysqa brings it
        return None
    try:
        with open(os.path.join(directory, "queue.yaml"), encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        scripts = [queue["script"] for queue in (config.get("queues") or {}).values() if queue.get("script")]
        names: set[str] = set()
        for script in scripts:
            with open(os.path.join(directory, script), encoding="utf-8") as handle:
                names |= template_names(handle.read())
    except (OSError, AttributeError, TypeError, yaml.YAMLError):
        return None  # pysqa itself reports a broken configuration when it submits
    return frozenset(names)


class PysqaSubmitter:
    """Submits through pysqa with the ``queue.yaml`` and templates of ``directory`` (any ``queue_type``); pysqa's
    commands run through :func:`run_queue_command`, so a refusal is a :class:`SubmissionError` with the
    scheduler's own message. ``command`` names the submit command in the error when pysqa submits nothing."""

    def __init__(self, directory: str, *, timeout: float = 60.0, command: str = "sbatch") -> None:
        self.directory = directory
        self.timeout = timeout
        self.command = command
        self._adapter: Any = None

    def _queue_adapter(self) -> Any:
        if self._adapter is None:
            try:
                from pysqa import QueueAdapter
            except ImportError as missing:
                raise ImportError('pysqa_config_directory needs pysqa: pip install "xl-spawn[pysqa]"') from missing

            def execute(
                commands: Sequence[str] | str,
                working_directory: str | None = None,
                split_output: bool = True,
                shell: bool = False,
                error_filename: str = "pysqa.err",
            ) -> Any:
                argv = commands.split() if isinstance(commands, str) else list(commands)
                out = run_queue_command(argv, cwd=working_directory, timeout=self.timeout)
                return out.split("\n") if split_output else out

            self._adapter = QueueAdapter(directory=self.directory, execute_command=execute)
        return self._adapter

    def submit(self, working_directory: str, variables: Mapping[str, Any]) -> int:
        """Submit the job of ``variables`` (:func:`base_script_variables`' names) in ``working_directory``."""
        adapter = self._queue_adapter()
        values = dict(variables)
        job = adapter.submit_job(
            working_directory=working_directory,
            job_name=values.pop("job_name"),
            cores=values.pop("cores"),
            command=values.pop("command"),
            dependency_list=values.pop("dependency_list") or None,
            run_time_max=values.pop("run_time_max"),
            memory_max=values.pop("memory_max"),
            # pysqa renders dependency_list; templates written for executorlib (its docs) use dependency: pass both
            **{k: v for k, v in values.items() if k != "working_directory" and v is not None},
        )
        if job is None:
            raise SubmissionError(1, [self.command], output=f"pysqa submitted nothing from {working_directory}")
        return int(job)

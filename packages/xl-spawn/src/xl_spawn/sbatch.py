"""Batch queue submission (SLURM ``sbatch``): job scripts, dependencies, status queries, cancellation.

Pure builders first: :func:`job_script_variables` and :func:`render_job_script` make the script (the default
template works with no configuration; a user template or a pysqa configuration directory replace it),
:func:`squeue_argv`/:func:`parse_squeue` and :func:`sacct_argv`/:func:`parse_sacct` ask for the state of *all*
watched jobs in one call. Then :class:`SlurmQueue` runs them.

Two SLURM pitfalls are handled here rather than left to templates:

- several upstream jobs must be written ``afterok:A:B``. SLURM reads ``afterok:A,B`` as ``afterok:A`` plus
  ``afterany:B``, so the job would run after a failed B. Templates receive ``dependency`` (and pysqa's
  ``dependency_list``) as a one-item list ``["A:B"]``, so both the pysqa-style ``{{ dependency | join(',') }}``
  and a ``{% for %}`` loop write the colon form.
- ``--time`` has whole minutes and ``run_time_max`` is in seconds: it is rounded *up* (61 s is 2 minutes), and
  templates receive ``run_time_max`` rounded up to whole minutes, so ``run_time_max // 60`` is right too.

jinja2 (and pysqa for ``pysqa_config_directory``) come with ``pip install "xl-spawn[pysqa]"``.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SLURM_TEMPLATE",
    "FAILED_STATES",
    "FINAL_STATES",
    "JOB_LOG_NAME",
    "JobState",
    "SlurmQueue",
    "SubmissionError",
    "job_script_variables",
    "parse_sacct",
    "parse_sbatch_output",
    "parse_squeue",
    "pysqa_template_variables",
    "render_job_script",
    "sacct_argv",
    "sbatch_argv",
    "scancel_argv",
    "squeue_argv",
    "template_variables",
]

#: The job's output (stdout and stderr) in its working directory, as the default template names it; executorlib
#: 1.x's templates use the same name, and its readers (a dead job's log tail) take it from here.
JOB_LOG_NAME = "time.out"

#: The script of a task when no template is given: no partition line unless one is named (sbatch rejects an
#: empty ``--partition=``), dependencies with colons, the time limit rounded up.
DEFAULT_SLURM_TEMPLATE = (
    """\
#!/bin/bash
#SBATCH --output="""
    + JOB_LOG_NAME
    + """
#SBATCH --job-name={{ job_name }}
#SBATCH --chdir={{ working_directory }}
#SBATCH --get-user-env=L
{%- if partition %}
#SBATCH --partition={{ partition }}
{%- endif %}
{%- if run_time_max %}
#SBATCH --time={{ run_time_max // 60 }}
{%- endif %}
{%- if dependency %}
#SBATCH --dependency=afterok:{{ dependency | join(':') }}
#SBATCH --kill-on-invalid-dep=yes
{%- endif %}
{%- if memory_max %}
#SBATCH --mem={{ memory_max }}G
{%- endif %}
#SBATCH --ntasks={{ cores }}
{%- if threads_per_core and threads_per_core > 1 %}
#SBATCH --cpus-per-task={{ threads_per_core }}
{%- endif %}
{%- if num_nodes %}
#SBATCH --nodes={{ num_nodes }}
{%- endif %}
{%- if exclusive %}
#SBATCH --exclusive
{%- endif %}

{{ command }}
"""
)

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


class SubmissionError(subprocess.CalledProcessError):
    """``sbatch`` refused the job: ``output`` holds sbatch's own message (as executorlib 1.x's
    ``CalledProcessError.output``), and ``str()`` shows it too."""

    def __str__(self) -> str:
        text = (self.output or "").strip() if isinstance(self.output, str) else ""
        return f"{super().__str__()}: {text}" if text else super().__str__()


def _minutes(seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"run_time_max must be a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"run_time_max must be a positive number of seconds, got {seconds!r}")
    return max(1, math.ceil(seconds / 60))


def job_script_variables(
    *,
    job_name: str,
    working_directory: str,
    command: str,
    cores: int = 1,
    dependency: Sequence[int | str] = (),
    run_time_max: float | None = None,
    memory_max: float | int | None = None,
    partition: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a job script template is rendered with (pysqa's names, so pysqa templates work)."""
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be an int >= 1, got {cores!r}")
    ids = [str(item) for item in dependency]
    for item in ids:
        if not item.isdigit():
            raise ValueError(f"a job dependency must be a job id, got {item!r}")
    joined = [":".join(ids)] if ids else []
    variables: dict[str, Any] = dict(extra or {})
    variables.update(
        job_name=job_name,
        working_directory=working_directory,
        command=command,
        cores=cores,
        dependency=joined,
        dependency_list=joined,
        run_time_max=None if run_time_max is None else _minutes(run_time_max) * 60,
        memory_max=memory_max,
        partition=partition,
    )
    return variables


def render_job_script(template: str | None, variables: Mapping[str, Any]) -> str:
    """The job script: ``template`` (jinja2; ``None`` for :data:`DEFAULT_SLURM_TEMPLATE`) filled in."""
    try:
        import jinja2
    except ImportError as missing:  # pragma: no cover - depends on the installation
        raise ImportError('job scripts are jinja2 templates: pip install "xl-spawn[pysqa]"') from missing
    text: str = jinja2.Template(template if template is not None else DEFAULT_SLURM_TEMPLATE).render(**variables)
    return text if text.endswith("\n") else text + "\n"


def template_variables(template: str | None) -> frozenset[str]:
    """The variables ``template`` (jinja2; ``None`` for :data:`DEFAULT_SLURM_TEMPLATE`) reads: the names a
    ``resource_dict`` may hand to the job script. Raises ``jinja2.TemplateSyntaxError`` for a broken template."""
    try:
        import jinja2
        import jinja2.meta
    except ImportError as missing:  # pragma: no cover - depends on the installation
        raise ImportError('job scripts are jinja2 templates: pip install "xl-spawn[pysqa]"') from missing
    parsed = jinja2.Environment().parse(template if template is not None else DEFAULT_SLURM_TEMPLATE)
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
                names |= template_variables(handle.read())
    except (OSError, AttributeError, TypeError, yaml.YAMLError):
        return None  # pysqa itself reports a broken configuration when it submits
    return frozenset(names)


def sbatch_argv(script: str, *, sbatch: str = "sbatch") -> list[str]:
    return [sbatch, "--parsable", script]


def parse_sbatch_output(text: str) -> int:
    """The job id of ``sbatch --parsable`` (``"67"`` or ``"67;cluster"``)."""
    for line in text.splitlines()[::-1]:
        head = line.strip().split(";")[0]
        if head.isdigit():
            return int(head)
    raise ValueError(f"sbatch printed no job id: {text!r}")


def _ids(job_ids: Sequence[int]) -> str:
    if not job_ids:
        raise ValueError("no job ids to ask about")
    return ",".join(str(int(job)) for job in job_ids)


def squeue_argv(job_ids: Sequence[int], *, squeue: str = "squeue") -> list[str]:
    """One ``squeue`` call for all ``job_ids``, finished ones included (``-t all``; SLURM keeps them for
    MinJobAge, 300 s by default)."""
    return [squeue, "-h", "-t", "all", "-j", _ids(job_ids), "-o", "%i|%T|%r"]


@dataclass(frozen=True)
class JobState:
    state: str
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def never_runs(self) -> bool:
        """Pending on a dependency that failed: without ``kill_invalid_depend`` it would wait forever."""
        return self.state == "PENDING" and self.reason == "DependencyNeverSatisfied"


def parse_squeue(text: str) -> dict[int, JobState]:
    """``{job id: JobState}`` from :func:`squeue_argv`'s output (array and step lines are left out)."""
    states: dict[int, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        state = parts[1].split()[0] if parts[1].split() else ""
        states[int(parts[0])] = JobState(state.rstrip("+"), parts[2] if len(parts) > 2 else "")
    return states


def sacct_argv(job_ids: Sequence[int], *, completion_log: bool = False, sacct: str = "sacct") -> list[str]:
    """One ``sacct`` call for jobs squeue has forgotten. ``completion_log`` reads the jobcomp file (``-c``),
    for clusters without slurmdbd."""
    argv = [sacct, "-n", "-P", "-X", "-j", _ids(job_ids), "-o", "JobID,State", "-S", "now-7days"]
    if completion_log:
        argv.insert(1, "-c")
        argv.remove("-X")
    return argv


def parse_sacct(text: str) -> dict[int, JobState]:
    """``{job id: JobState}`` from :func:`sacct_argv`'s output; ``CANCELLED by 0`` reads ``CANCELLED``."""
    states: dict[int, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].split():
            continue
        states[int(parts[0])] = JobState(parts[1].split()[0].rstrip("+"))
    return states


def scancel_argv(job_ids: Sequence[int], *, scancel: str = "scancel") -> list[str]:
    return [scancel, *(str(int(job)) for job in job_ids)]


def _run(argv: Sequence[str], *, cwd: str | None = None, timeout: float = 60.0) -> str:
    """Run a queue command; raise :class:`SubmissionError` with its merged output when it fails."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
    except FileNotFoundError as missing:
        raise SubmissionError(127, list(argv), output=f"{argv[0]}: command not found ({missing})") from missing
    if done.returncode != 0:
        raise SubmissionError(done.returncode, list(argv), output=done.stdout)
    return done.stdout


class SlurmQueue:
    """Submits job scripts with ``sbatch``, asks ``squeue``/``sacct`` about many jobs at once, cancels them.

    ``pysqa_config_directory`` hands submission to pysqa with that directory's ``queue.yaml`` and templates
    (dependencies are still passed in the colon form). Every command's failure raises :class:`SubmissionError`
    carrying the command's own output.
    """

    def __init__(self, *, pysqa_config_directory: str | None = None, timeout: float = 60.0) -> None:
        self.pysqa_config_directory = pysqa_config_directory
        self.timeout = timeout
        self._pysqa: Any = None
        self._accounting: bool | None = None  # does plain sacct work (slurmdbd)?

    def template_variables(self, template: str | None) -> frozenset[str] | None:
        """The variables of the job script ``submit`` would render for ``template``: the default template's,
        ``template``'s, or (with a pysqa configuration and no ``template``) those of its queues' templates."""
        if self.pysqa_config_directory is not None and template is None:
            return pysqa_template_variables(self.pysqa_config_directory)
        return template_variables(template)

    def submit(self, working_directory: str, variables: Mapping[str, Any], template: str | None = None) -> int:
        """Write ``run_queue.sh`` into ``working_directory`` and submit it; return the job id."""
        if self.pysqa_config_directory is not None and template is None:
            return self._submit_pysqa(working_directory, variables)
        script = os.path.join(working_directory, "run_queue.sh")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(render_job_script(template, variables))
        return parse_sbatch_output(_run(sbatch_argv(script), cwd=working_directory, timeout=self.timeout))

    def _submit_pysqa(self, working_directory: str, variables: Mapping[str, Any]) -> int:
        if self._pysqa is None:
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
                out = _run(argv, cwd=working_directory, timeout=self.timeout)
                return out.split("\n") if split_output else out

            self._pysqa = QueueAdapter(directory=self.pysqa_config_directory, execute_command=execute)
        values = dict(variables)
        job = self._pysqa.submit_job(
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
            raise SubmissionError(1, ["sbatch"], output=f"pysqa submitted nothing from {working_directory}")
        return int(job)

    def states(self, job_ids: Sequence[int]) -> dict[int, JobState]:
        """The state of every job of ``job_ids`` that SLURM still knows: one ``squeue`` call, then one ``sacct``
        call for those squeue no longer lists (jobs older than MinJobAge)."""
        if not job_ids:
            return {}
        try:
            states = parse_squeue(_run(squeue_argv(job_ids), timeout=self.timeout))
        except SubmissionError as problem:
            if "Invalid job id" not in str(problem.output):
                raise
            states = {}  # every id is older than MinJobAge: ask accounting
        missing = [job for job in job_ids if job not in states]
        if missing:
            states.update(self._accounted(missing))
        return states

    def _accounted(self, job_ids: Sequence[int]) -> dict[int, JobState]:
        for completion_log in (False, True) if self._accounting is not False else (True,):
            try:
                out = _run(sacct_argv(job_ids, completion_log=completion_log), timeout=self.timeout)
            except SubmissionError:
                continue
            if "accounting storage is disabled" in out:
                self._accounting = False
                continue
            return parse_sacct(out)
        return {}

    def cancel(self, job_ids: Sequence[int]) -> None:
        if job_ids:
            _run(scancel_argv(job_ids), timeout=self.timeout)

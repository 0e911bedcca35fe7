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

jinja2 (for your own templates) and pysqa (for ``pysqa_config_directory``) come with ``pip install "xl-spawn[pysqa]"``;
the default job script needs neither (:func:`default_slurm_script`).

The names every batch queue shares (:class:`JobState`, :class:`SubmissionError`, :data:`JOB_LOG_NAME`, the
final states, :func:`pysqa_template_variables`) live in :mod:`xl_spawn.batch` and are re-exported here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from xl_spawn.batch import (
    FAILED_STATES,
    FINAL_STATES,
    JOB_LOG_NAME,
    JobState,
    PysqaSubmitter,
    SubmissionError,
    base_script_variables,
    check_run_time_max,
    pysqa_template_variables,
    render_template,
    run_queue_command,
    template_names,
)

__all__ = [
    "DEFAULT_SLURM_TEMPLATE",
    "DEFAULT_SLURM_VARIABLES",
    "FAILED_STATES",
    "FINAL_STATES",
    "JOB_LOG_NAME",
    "JobState",
    "SlurmQueue",
    "SubmissionError",
    "default_slurm_script",
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


#: The variables :data:`DEFAULT_SLURM_TEMPLATE` reads (what ``template_variables(None)`` returns without jinja2).
DEFAULT_SLURM_VARIABLES = frozenset(
    {
        "job_name",
        "working_directory",
        "partition",
        "run_time_max",
        "dependency",
        "memory_max",
        "cores",
        "threads_per_core",
        "num_nodes",
        "exclusive",
        "command",
    }
)


def default_slurm_script(variables: Mapping[str, Any]) -> str:
    """:data:`DEFAULT_SLURM_TEMPLATE` rendered without jinja2 (the same text, line for line: a property test
    compares the two), so the default job script needs no optional package."""
    get = variables.get
    run_time_max, dependency = get("run_time_max"), get("dependency")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --output={JOB_LOG_NAME}",
        f"#SBATCH --job-name={get('job_name')}",
        f"#SBATCH --chdir={get('working_directory')}",
        "#SBATCH --get-user-env=L",
    ]
    if get("partition"):
        lines.append(f"#SBATCH --partition={get('partition')}")
    if run_time_max:
        lines.append(f"#SBATCH --time={run_time_max // 60}")
    if dependency:
        lines.append(f"#SBATCH --dependency=afterok:{':'.join(str(job) for job in dependency)}")
        lines.append("#SBATCH --kill-on-invalid-dep=yes")
    if get("memory_max"):
        lines.append(f"#SBATCH --mem={get('memory_max')}G")
    lines.append(f"#SBATCH --ntasks={get('cores')}")
    threads = get("threads_per_core")
    if threads and threads > 1:
        lines.append(f"#SBATCH --cpus-per-task={threads}")
    if get("num_nodes"):
        lines.append(f"#SBATCH --nodes={get('num_nodes')}")
    if get("exclusive"):
        lines.append("#SBATCH --exclusive")
    return "\n".join(lines) + f"\n\n{get('command')}\n"


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(check_run_time_max(seconds) / 60))


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
    return base_script_variables(
        job_name=job_name,
        working_directory=working_directory,
        command=command,
        cores=cores,
        dependency=joined,
        run_time_max=None if run_time_max is None else _minutes(run_time_max) * 60,
        memory_max=memory_max,
        partition=partition,
        extra=extra,
    )


def render_job_script(template: str | None, variables: Mapping[str, Any]) -> str:
    """The job script: ``template`` (jinja2) filled in; ``None``: the default script (no jinja2 needed)."""
    return default_slurm_script(variables) if template is None else render_template(template, variables)


def template_variables(template: str | None) -> frozenset[str]:
    """The variables ``template`` (jinja2; ``None`` for :data:`DEFAULT_SLURM_TEMPLATE`) reads: the names a
    ``resource_dict`` may hand to the job script. Raises ``jinja2.TemplateSyntaxError`` for a broken template."""
    return DEFAULT_SLURM_VARIABLES if template is None else template_names(template)


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


class SlurmQueue:
    """Submits job scripts with ``sbatch``, asks ``squeue``/``sacct`` about many jobs at once, cancels them.

    ``pysqa_config_directory`` hands submission to pysqa with that directory's ``queue.yaml`` and templates
    (dependencies are still passed in the colon form). Every command's failure raises :class:`SubmissionError`
    carrying the command's own output.
    """

    def __init__(self, *, pysqa_config_directory: str | None = None, timeout: float = 60.0) -> None:
        self.pysqa_config_directory = pysqa_config_directory
        self.timeout = timeout
        self._pysqa: PysqaSubmitter | None = None
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
        return parse_sbatch_output(run_queue_command(sbatch_argv(script), cwd=working_directory, timeout=self.timeout))

    def _submit_pysqa(self, working_directory: str, variables: Mapping[str, Any]) -> int:
        if self._pysqa is None:
            assert self.pysqa_config_directory is not None
            self._pysqa = PysqaSubmitter(self.pysqa_config_directory, timeout=self.timeout, command="sbatch")
        return self._pysqa.submit(working_directory, variables)

    def states(self, job_ids: Sequence[int]) -> dict[int, JobState]:
        """The state of every job of ``job_ids`` that SLURM still knows: one ``squeue`` call, then one ``sacct``
        call for those squeue no longer lists (jobs older than MinJobAge)."""
        if not job_ids:
            return {}
        try:
            states = parse_squeue(run_queue_command(squeue_argv(job_ids), timeout=self.timeout))
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
                out = run_queue_command(sacct_argv(job_ids, completion_log=completion_log), timeout=self.timeout)
            except SubmissionError:
                continue
            if "accounting storage is disabled" in out:
                self._accounting = False
                continue
            return parse_sacct(out)
        return {}

    def cancel(self, job_ids: Sequence[int]) -> None:
        if job_ids:
            run_queue_command(scancel_argv(job_ids), timeout=self.timeout)

"""Batch jobs in a Flux instance (``flux batch``) for file mode: job scripts, dependencies, states, cancellation.

The same interface as :class:`xl_spawn.SlurmQueue`, so :class:`xl_spawn.QueueWatcher` watches flux jobs too:
:meth:`FluxBatchQueue.states` asks ``flux jobs`` about all watched jobs in one call and names their states as
the watcher knows them (``CD`` -> ``COMPLETED``, ``F`` -> ``FAILED``, ``CA`` -> ``CANCELLED``, ``TO`` ->
``TIMEOUT``; pending and running states are not final). The default job script (:data:`DEFAULT_FLUX_TEMPLATE`)
uses ``# flux:`` directives and pysqa's template variable names, so pysqa flux templates work unchanged; it
writes the job's output to :data:`xl_spawn.JOB_LOG_NAME` in the job directory. A ``pysqa_config_directory``
whose ``queue.yaml`` says ``queue_type: FLUX`` hands submission to pysqa (which needs the flux bindings).

Flux ids print as ``ƒ`` plus base58 (``f58``); :func:`parse_job_id` reads that, ``f``-ASCII and decimal forms
without the flux bindings. Differences from SLURM handled here: each upstream job is its own
``--dependency=afterok:ID`` line; ``--time-limit`` takes seconds (no rounding to minutes); ``--exclusive``
needs ``--nodes`` (flux refuses it otherwise, and its message reaches :class:`xl_spawn.SubmissionError`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from xl_spawn.batch import (
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
    "DEFAULT_FLUX_TEMPLATE",
    "DEFAULT_FLUX_VARIABLES",
    "FLUX_STATES",
    "FluxBatchQueue",
    "default_flux_script",
    "flux_batch_argv",
    "flux_cancel_argv",
    "flux_job_script_variables",
    "flux_jobs_argv",
    "parse_flux_jobs",
    "parse_job_id",
    "render_flux_script",
]

#: The script of a task when no template is given (pysqa's variable names; each dependency on its own line).
DEFAULT_FLUX_TEMPLATE = (
    """\
#!/bin/bash
# flux: --job-name={{ job_name }}
# flux: --output="""
    + JOB_LOG_NAME
    + """
# flux: --nslots={{ cores }}
{%- if threads_per_core and threads_per_core > 1 %}
# flux: --cores-per-slot={{ threads_per_core }}
{%- endif %}
{%- if gpus_per_core %}
# flux: --gpus-per-slot={{ gpus_per_core }}
{%- endif %}
{%- if num_nodes %}
# flux: --nodes={{ num_nodes }}
{%- endif %}
{%- if exclusive %}
# flux: --exclusive
{%- endif %}
{%- if run_time_max %}
# flux: --time-limit={{ run_time_max }}s
{%- endif %}
{%- if priority is not none %}
# flux: --urgency={{ priority }}
{%- endif %}
{%- for job in dependency %}
# flux: --dependency=afterok:{{ job }}
{%- endfor %}

{{ command }}
"""
)

#: The variables :data:`DEFAULT_FLUX_TEMPLATE` reads (what the queue's ``template_variables(None)`` returns).
DEFAULT_FLUX_VARIABLES = frozenset(
    {
        "job_name",
        "cores",
        "threads_per_core",
        "gpus_per_core",
        "num_nodes",
        "exclusive",
        "run_time_max",
        "priority",
        "dependency",
        "command",
    }
)


def default_flux_script(variables: Mapping[str, Any]) -> str:
    """:data:`DEFAULT_FLUX_TEMPLATE` rendered without jinja2 (the same text, line for line: a property test
    compares the two), so the default job script needs no optional package."""
    get = variables.get
    lines = [
        "#!/bin/bash",
        f"# flux: --job-name={get('job_name')}",
        f"# flux: --output={JOB_LOG_NAME}",
        f"# flux: --nslots={get('cores')}",
    ]
    threads = get("threads_per_core")
    if threads and threads > 1:
        lines.append(f"# flux: --cores-per-slot={threads}")
    if get("gpus_per_core"):
        lines.append(f"# flux: --gpus-per-slot={get('gpus_per_core')}")
    if get("num_nodes"):
        lines.append(f"# flux: --nodes={get('num_nodes')}")
    if get("exclusive"):
        lines.append("# flux: --exclusive")
    if get("run_time_max"):
        lines.append(f"# flux: --time-limit={get('run_time_max')}s")
    if get("priority") is not None:
        lines.append(f"# flux: --urgency={get('priority')}")
    lines += [f"# flux: --dependency=afterok:{job}" for job in get("dependency") or ()]
    return "\n".join(lines) + f"\n\n{get('command')}\n"


#: ``flux jobs`` status abbreviations -> the state names the watcher knows (SLURM's spelling).
FLUX_STATES = {
    "D": "PENDING",  # waiting on a dependency
    "P": "PENDING",  # priority not yet assigned
    "S": "PENDING",  # waiting for resources
    "PR": "PENDING",
    "R": "RUNNING",
    "C": "COMPLETING",  # cleanup, even of a job that succeeded: not final yet
    "CD": "COMPLETED",
    "F": "FAILED",
    "CA": "CANCELLED",
    "TO": "TIMEOUT",
}

_F58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def parse_job_id(text: str) -> int:
    """A flux job id as an int, from ``ƒMAjEM5``, ``fMAjEM5`` (``FLUX_F58_FORCE_ASCII``) or ``13237223424``.

    >>> parse_job_id("ƒMAjEM5"), parse_job_id("fMAjEM5"), parse_job_id(" 13237223424\\n")
    (13237223424, 13237223424, 13237223424)
    """
    word = text.strip()
    if word.isdigit():
        return int(word)
    if len(word) > 1 and word[0] in ("ƒ", "f") and all(char in _F58 for char in word[1:]):
        value = 0
        for char in word[1:]:
            value = value * 58 + _F58.index(char)
        return value
    raise ValueError(f"not a flux job id: {text!r} (expected ƒ<base58>, f<base58> or a decimal number)")


def flux_job_script_variables(
    *,
    job_name: str,
    working_directory: str,
    command: str,
    cores: int = 1,
    dependency: Sequence[int | str] = (),
    run_time_max: float | None = None,
    priority: int | None = None,
    memory_max: float | int | None = None,
    partition: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables of a flux job script: :func:`xl_spawn.job_script_variables`' names, but ``dependency``
    (and ``dependency_list``) are the upstream ids one by one (decimal), ``run_time_max`` stays in seconds, and
    ``priority`` (flux's urgency, 0-31) is always defined."""
    ids = [str(parse_job_id(str(item))) for item in dependency]
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 31
    ):
        raise ValueError(
            f"priority (flux urgency) must be an int between 0 and 31 (16 is the default), got {priority!r}"
        )
    variables = base_script_variables(
        job_name=job_name,
        working_directory=working_directory,
        command=command,
        cores=cores,
        dependency=ids,
        run_time_max=run_time_max,  # in seconds, as flux --time-limit=...s takes it
        memory_max=memory_max,
        partition=partition,
        extra=extra,
    )
    if run_time_max is not None:
        check_run_time_max(run_time_max)
    variables["priority"] = priority
    return variables


def render_flux_script(template: str | None, variables: Mapping[str, Any]) -> str:
    """The flux batch script: ``template`` (jinja2) filled in; ``None``: the default script (no jinja2 needed)."""
    return default_flux_script(variables) if template is None else render_template(template, variables)


def flux_batch_argv(script: str, *, flux: str = "flux") -> list[str]:
    return [flux, "batch", script]


def flux_jobs_argv(job_ids: Sequence[int], *, flux: str = "flux") -> list[str]:
    """One ``flux jobs`` call for all ``job_ids`` (finished ones included: an id list shows every state)."""
    if not job_ids:
        raise ValueError("no job ids to ask about")
    fields = "{id.dec}|{status_abbrev}|{exception.type}|{exception.note}"
    return [flux, "jobs", "--no-header", f"--format={fields}", *(str(int(job)) for job in job_ids)]


def parse_flux_jobs(text: str) -> dict[int, JobState]:
    """``{job id: JobState}`` from :func:`flux_jobs_argv`'s output; the reason is flux's exception, if any
    (``dependency: dependency after-success=ƒ... can never be satisfied``)."""
    states: dict[int, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        state = FLUX_STATES.get(parts[1].strip(), parts[1].strip())
        kind = parts[2].strip() if len(parts) > 2 else ""
        note = parts[3].strip() if len(parts) > 3 else ""
        reason = f"{kind}: {note}" if kind and note else kind
        states[int(parts[0])] = JobState(state, reason)
    return states


def flux_cancel_argv(job_ids: Sequence[int], *, flux: str = "flux") -> list[str]:
    return [flux, "cancel", *(str(int(job)) for job in job_ids)]


class FluxBatchQueue:
    """Submits job scripts with ``flux batch`` (in the instance at ``FLUX_URI``), asks ``flux jobs`` about many
    jobs at once, cancels them; the interface of :class:`xl_spawn.SlurmQueue`.

    ``pysqa_config_directory`` hands submission to pysqa with that directory's ``queue.yaml`` (``queue_type:
    FLUX``) and templates. Every command's failure raises :class:`xl_spawn.SubmissionError` with its output.
    """

    def __init__(self, *, pysqa_config_directory: str | None = None, timeout: float = 60.0, flux: str = "flux") -> None:
        self.pysqa_config_directory = pysqa_config_directory
        self.timeout = timeout
        self.flux = flux
        # pysqa reads queue_type (FLUX) from this directory's queue.yaml
        self._pysqa = (
            None
            if pysqa_config_directory is None
            else PysqaSubmitter(pysqa_config_directory, timeout=timeout, command="flux batch")
        )

    def template_variables(self, template: str | None) -> frozenset[str] | None:
        """The variables of the job script ``submit`` would render for ``template`` (see SlurmQueue)."""
        if self.pysqa_config_directory is not None and template is None:
            return pysqa_template_variables(self.pysqa_config_directory)
        return DEFAULT_FLUX_VARIABLES if template is None else template_names(template)

    def submit(self, working_directory: str, variables: Mapping[str, Any], template: str | None = None) -> int:
        """Write ``run_queue.sh`` into ``working_directory`` and ``flux batch`` it there; return the job id."""
        if self._pysqa is not None and template is None:
            return self._pysqa.submit(working_directory, variables)
        script = os.path.join(working_directory, "run_queue.sh")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(render_flux_script(template, variables))
        out = run_queue_command(flux_batch_argv(script, flux=self.flux), cwd=working_directory, timeout=self.timeout)
        for line in out.splitlines()[::-1]:  # the id, after any warning flux printed
            try:
                return parse_job_id(line)
            except ValueError:
                continue
        raise SubmissionError(1, flux_batch_argv(script, flux=self.flux), output=f"flux batch printed no job id: {out}")

    def states(self, job_ids: Sequence[int]) -> dict[int, JobState]:
        """The state of every job of ``job_ids`` the instance knows (ids it does not know are left out)."""
        if not job_ids:
            return {}
        return parse_flux_jobs(run_queue_command(flux_jobs_argv(job_ids, flux=self.flux), timeout=self.timeout))

    def cancel(self, job_ids: Sequence[int]) -> None:
        if job_ids:
            run_queue_command(flux_cancel_argv(job_ids, flux=self.flux), timeout=self.timeout)

"""Flux's batch jobs (``FluxClusterExecutor``): the :class:`~executorlib.launchers.batch_jobs.BatchSystem` of
``flux batch``, and the one owner of its job script's variables (:func:`flux_batch_variables`).

A batch job is a flux instance of its own: a task of N cores runs under ``flux run --ntasks=N`` inside it, and a
function in the job may open a ``FluxJobExecutor`` on the job's resources (nesting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from executorlib.launchers.batch_jobs import BatchSystem
from executorlib.launchers.flux import FluxInstance, check_fits, flux_job_step
from executorlib.resources import Resources


def flux_batch_system(
    instance: FluxInstance, *, pysqa_config_directory: str | None = None, pmi_mode: str | None = None
) -> BatchSystem:
    """flux batch jobs in ``instance`` (the one at ``FLUX_URI``), ``flux run`` around a task of N cores; a request
    larger than the instance is rejected at submit() (flux would refuse the job as unsatisfiable)."""
    from xl_spawn import FluxBatchQueue, default_flux_script

    def check_request(resources: Resources, where: str) -> None:
        check_fits(instance, resources, where=where)

    return BatchSystem(
        name="Flux",
        queue=FluxBatchQueue(pysqa_config_directory=pysqa_config_directory),
        step=partial(flux_job_step, pmi_mode=pmi_mode),
        variables=flux_batch_variables,
        default_script=default_flux_script,
        default_template_name="the default flux batch job script template",
        check_request=check_request,
    )


def flux_batch_variables(
    resources: Resources,
    extras: Mapping[str, Any],
    *,
    job_name: str,
    working_directory: str,
    command: str,
    dependency: Sequence[int] = (),
) -> dict[str, Any]:
    """The job script template's variables for one flux batch job sized for ``resources``: ``cores`` slots of
    ``threads_per_core`` cores and ``gpus_per_core`` GPUs each, ``run_time_max`` in seconds, ``priority`` as
    flux's urgency (``extras``: the caller's other template variables; ``job_name``, ``memory_max`` and
    ``partition`` among them win over the defaults)."""
    from xl_spawn import flux_job_script_variables

    extras = dict(extras)
    return flux_job_script_variables(
        job_name=str(extras.pop("job_name", job_name)),
        working_directory=working_directory,
        command=command,
        cores=resources.cores,
        dependency=dependency,
        run_time_max=resources.run_time_max,
        priority=resources.priority,
        memory_max=extras.pop("memory_max", None),
        partition=extras.pop("partition", None),
        extra={
            **extras,
            "threads_per_core": resources.threads_per_core,
            "gpus_per_core": resources.gpus_per_core,
            "num_nodes": resources.num_nodes,
            "exclusive": resources.exclusive,
        },
    )

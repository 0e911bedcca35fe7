"""SLURM's batch jobs (``SlurmClusterExecutor``): the :class:`~executorlib.launchers.batch_jobs.BatchSystem` of
``sbatch``, and the one owner of its job script's variables (:func:`sbatch_variables`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from executorlib.launchers.batch_jobs import BatchSystem
from executorlib.launchers.srun import batch_job_step
from executorlib.resources import Resources


def slurm_batch_system(*, pysqa_config_directory: str | None = None, pmi_mode: str | None = None) -> BatchSystem:
    """sbatch jobs, ``srun --ntasks=N`` around a task of N cores, ``--mpi=<pmi_mode>``."""
    from xl_spawn import SlurmQueue, default_slurm_script

    return BatchSystem(
        name="SLURM",
        queue=SlurmQueue(pysqa_config_directory=pysqa_config_directory),
        step=partial(batch_job_step, pmi_mode=pmi_mode),
        variables=sbatch_variables,
        default_script=default_slurm_script,
        default_template_name="the default SLURM job script template",
    )


def sbatch_variables(
    resources: Resources,
    extras: Mapping[str, Any],
    *,
    job_name: str,
    working_directory: str,
    command: str,
    dependency: Sequence[int] = (),
) -> dict[str, Any]:
    """The job script template's variables for one job sized for ``resources`` (``extras``: the caller's other
    template variables; ``job_name``, ``memory_max`` and ``partition`` among them win over the defaults)."""
    from xl_spawn import job_script_variables

    extras = dict(extras)
    return job_script_variables(
        job_name=str(extras.pop("job_name", job_name)),
        working_directory=working_directory,
        command=command,
        cores=resources.cores,
        dependency=dependency,
        run_time_max=resources.run_time_max,
        memory_max=extras.pop("memory_max", None),
        partition=extras.pop("partition", None),
        extra={
            **extras,
            "threads_per_core": resources.threads_per_core,
            "num_nodes": resources.num_nodes,
            "exclusive": resources.exclusive,
            "priority": resources.priority,
        },
    )

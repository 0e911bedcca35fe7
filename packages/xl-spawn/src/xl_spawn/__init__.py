"""xl-spawn: turn a request for a worker into a running process, and stop it cleanly.

Pure builders (argv, environment, exit-status text, mpiexec and srun command lines) and spawners that start one
process in its own process group with a sentinel fd to wait on. Imports no other project package. The MPI, SLURM and
Flux names load on first use (the flux bindings only when a flux job is built).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from xl_spawn.argv import python_module_argv
from xl_spawn.env import prepend_path, thread_env
from xl_spawn.exitcodes import describe_returncode
from xl_spawn.exits import UnwatchableProcessError, exit_fd
from xl_spawn.forkserver import ForkedSpawner, ForkServer
from xl_spawn.process import LIFELINE_VARIABLE, Spawner, SubprocessSpawner

if TYPE_CHECKING:
    from xl_spawn.batch import JOB_LOG_NAME, JobState, SubmissionError
    from xl_spawn.cmdline import pid_is_zombie, pid_runs
    from xl_spawn.flux import (
        FluxJobFailure,
        FluxJobPlan,
        FluxJobSpawner,
        FluxRequest,
        flux_job_plan,
        flux_jobspec,
        flux_jobspec_dict,
        import_flux,
    )
    from xl_spawn.flux_batch import (
        DEFAULT_FLUX_TEMPLATE,
        FluxBatchQueue,
        default_flux_script,
        flux_job_script_variables,
        render_flux_script,
    )
    from xl_spawn.mpi import (
        MpiFlavour,
        detect_mpi_flavour,
        find_mpiexec,
        mpi4py_available,
        mpi_missing_message,
        mpiexec_argv,
        parse_mpi_version_text,
    )
    from xl_spawn.sbatch import (
        DEFAULT_SLURM_TEMPLATE,
        SlurmQueue,
        default_slurm_script,
        job_script_variables,
        render_job_script,
        template_variables,
    )
    from xl_spawn.srun import SrunRequest, describe_srun_exit, parse_slurm_state, srun_argv, srun_time_minutes
    from xl_spawn.watcher import JobEnd, QueueWatcher

# Logging is the caller's choice: no output unless the application configures a handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "pid_is_zombie": "cmdline",
    "pid_runs": "cmdline",
    "DEFAULT_FLUX_TEMPLATE": "flux_batch",
    "FluxBatchQueue": "flux_batch",
    "flux_job_script_variables": "flux_batch",
    "default_flux_script": "flux_batch",
    "render_flux_script": "flux_batch",
    "default_slurm_script": "sbatch",
    "FluxJobFailure": "flux",
    "FluxJobPlan": "flux",
    "FluxJobSpawner": "flux",
    "FluxRequest": "flux",
    "flux_job_plan": "flux",
    "flux_jobspec": "flux",
    "flux_jobspec_dict": "flux",
    "import_flux": "flux",
    "MpiFlavour": "mpi",
    "detect_mpi_flavour": "mpi",
    "find_mpiexec": "mpi",
    "mpi4py_available": "mpi",
    "mpi_missing_message": "mpi",
    "mpiexec_argv": "mpi",
    "parse_mpi_version_text": "mpi",
    "DEFAULT_SLURM_TEMPLATE": "sbatch",
    "JOB_LOG_NAME": "batch",
    "JobState": "batch",
    "SlurmQueue": "sbatch",
    "SubmissionError": "batch",
    "job_script_variables": "sbatch",
    "render_job_script": "sbatch",
    "template_variables": "sbatch",
    "JobEnd": "watcher",
    "QueueWatcher": "watcher",
    "SrunRequest": "srun",
    "describe_srun_exit": "srun",
    "parse_slurm_state": "srun",
    "srun_argv": "srun",
    "srun_time_minutes": "srun",
}

__all__ = [
    "DEFAULT_FLUX_TEMPLATE",
    "DEFAULT_SLURM_TEMPLATE",
    "JOB_LOG_NAME",
    "LIFELINE_VARIABLE",
    "FluxBatchQueue",
    "FluxJobFailure",
    "FluxJobPlan",
    "FluxJobSpawner",
    "FluxRequest",
    "ForkServer",
    "ForkedSpawner",
    "JobEnd",
    "JobState",
    "MpiFlavour",
    "QueueWatcher",
    "SlurmQueue",
    "Spawner",
    "SrunRequest",
    "SubmissionError",
    "SubprocessSpawner",
    "UnwatchableProcessError",
    "default_flux_script",
    "default_slurm_script",
    "describe_returncode",
    "describe_srun_exit",
    "detect_mpi_flavour",
    "exit_fd",
    "find_mpiexec",
    "flux_job_plan",
    "flux_job_script_variables",
    "flux_jobspec",
    "flux_jobspec_dict",
    "import_flux",
    "job_script_variables",
    "mpi4py_available",
    "mpi_missing_message",
    "mpiexec_argv",
    "parse_mpi_version_text",
    "parse_slurm_state",
    "pid_is_zombie",
    "pid_runs",
    "prepend_path",
    "python_module_argv",
    "render_flux_script",
    "render_job_script",
    "srun_argv",
    "srun_time_minutes",
    "template_variables",
    "thread_env",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("xl-spawn")
    if name in _LAZY:
        return getattr(importlib.import_module(f"xl_spawn.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'xl_spawn' has no attribute {name!r}")

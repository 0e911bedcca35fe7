"""SrunLauncher: each worker is an srun step (SlurmJobExecutor); also the allocation's size, the keys SLURM cannot
honour, and for batch jobs the step that runs a task on its ranks (:func:`batch_job_step`).

Pure functions and a small launcher object; the executor (executors/slurm.py) hands it to the same schedulers
SingleNodeExecutor uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xl_spawn import SubprocessSpawner, python_module_argv

from executorlib.errors import ResourceDictError
from executorlib.launchers.local import WORKER_MODULE
from executorlib.resources import ExecutorRules, Resources

SLURM_JOB_RULES = ExecutorRules(
    executor="SlurmJobExecutor",
    unsupported={
        "priority": "srun steps have no queue priority; use FluxJobExecutor or the cluster executors",
        "submission_template": "it submits no batch jobs; use SlurmClusterExecutor or FluxClusterExecutor",
    },
)

#: Bytes of srun's stderr kept per worker: enough for its last lines, where slurmstepd names the step's fate.
SRUN_STDERR_TAIL = 8192

_CPUS_PER_NODE = re.compile(r"^\s*(\d+)(?:\(x(\d+)\))?\s*$")


@dataclass(frozen=True)
class Allocation:
    """The SLURM allocation this process runs in: its job id, its CPUs, and where that number came from."""

    job_id: str
    cores: int
    source: str


def _count(environ: Mapping[str, str], name: str) -> int | None:
    try:
        value = int(environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _cpus_per_node(text: str) -> int | None:
    """Sum of SLURM's compressed per-node list, e.g. ``"4(x2),2"`` -> 10."""
    total = 0
    for part in text.split(","):
        match = _CPUS_PER_NODE.match(part)
        if match is None:
            return None
        total += int(match.group(1)) * int(match.group(2) or 1)
    return total or None


def current_allocation(environ: Mapping[str, str]) -> Allocation | None:
    """The allocation described by ``environ`` (this process runs in ``salloc``, ``sbatch`` or a step), or None
    outside any (then every srun makes an allocation of its own).

    Its size is ``SLURM_NTASKS x SLURM_CPUS_PER_TASK`` when both are set (as executorlib 1.x reads it); else the
    CPUs SLURM gave the job, ``SLURM_JOB_CPUS_PER_NODE`` summed over its nodes; else ``SLURM_CPUS_ON_NODE`` times
    the nodes; else ``SLURM_NTASKS`` (one CPU per task).

    >>> current_allocation({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "3"}).cores
    6
    >>> current_allocation({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_JOB_CPUS_PER_NODE": "4(x2),2"}).cores
    10
    >>> current_allocation({}) is None
    True
    """
    job_id = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    if not job_id:
        return None
    ntasks = _count(environ, "SLURM_NTASKS") or _count(environ, "SLURM_NPROCS")
    per_task = _count(environ, "SLURM_CPUS_PER_TASK")
    if ntasks is not None and per_task is not None:
        return Allocation(job_id, ntasks * per_task, f"SLURM_NTASKS={ntasks} x SLURM_CPUS_PER_TASK={per_task}")
    per_node = environ.get("SLURM_JOB_CPUS_PER_NODE")
    total = _cpus_per_node(per_node) if per_node else None
    if total is not None:
        return Allocation(job_id, total, f"SLURM_JOB_CPUS_PER_NODE={per_node}")
    on_node = _count(environ, "SLURM_CPUS_ON_NODE")
    if on_node is not None:
        nodes = _count(environ, "SLURM_JOB_NUM_NODES") or _count(environ, "SLURM_NNODES") or 1
        return Allocation(job_id, on_node * nodes, f"SLURM_CPUS_ON_NODE={on_node} on {nodes} node(s)")
    if ntasks is not None:
        return Allocation(job_id, ntasks, f"SLURM_NTASKS={ntasks}")
    return None


def task_slots_error(environ: Mapping[str, str], workers: int, cpus_per_worker: int) -> str | None:
    """Why a pool of ``workers`` workers of ``cpus_per_worker`` CPUs does not fit ``SLURM_NTASKS x
    SLURM_CPUS_PER_TASK``, or None when it fits or either variable is unset (pure). As in executorlib 1.x, no
    ``SLURM_JOB_ID`` is needed: the two variables alone describe what the steps may use.

    >>> task_slots_error({"SLURM_NTASKS": "4", "SLURM_CPUS_PER_TASK": "2"}, 3, 4).endswith("need 12, but "
    ...     "SLURM_NTASKS=4 x SLURM_CPUS_PER_TASK=2 give 8")
    True
    >>> task_slots_error({"SLURM_NTASKS": "4"}, 3, 4) is None
    True
    """
    ntasks = _count(environ, "SLURM_NTASKS")
    per_task = _count(environ, "SLURM_CPUS_PER_TASK")
    if ntasks is None or per_task is None or workers * cpus_per_worker <= ntasks * per_task:
        return None
    return (
        f"max_workers={workers} workers of {cpus_per_worker} CPU(s) each (cores x threads_per_core) need "
        f"{workers * cpus_per_worker}, but SLURM_NTASKS={ntasks} x SLURM_CPUS_PER_TASK={per_task} give "
        f"{ntasks * per_task}"
    )


def single_node(environ: Mapping[str, str]) -> bool:
    """Whether this process runs in an allocation of exactly one node (so workers started by srun run here)."""
    nodes = _count(environ, "SLURM_JOB_NUM_NODES") or _count(environ, "SLURM_NNODES")
    return bool(environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")) and nodes == 1


def batch_job_step(resources: Resources, command: Sequence[str], *, pmi_mode: str | None) -> list[str]:
    """``command`` as a batch job sized for ``resources`` runs it: as is for one core, else as the job's one srun
    step on every rank (no ``--exact``: the step is the whole job)."""
    if resources.cores == 1:
        return list(command)
    from xl_spawn import SrunRequest, srun_argv

    request = SrunRequest(
        cores=resources.cores, threads_per_core=resources.threads_per_core, pmi_mode=pmi_mode or None, exact=False
    )
    return srun_argv(request, command)


@dataclass(frozen=True)
class SrunLauncher:
    """Each worker is one srun step: ``srun --ntasks=cores --cpus-per-task=threads_per_core --exact ...
    python -m xl_comm.worker [...] [--mpi]`` (the worker runs on every rank when cores > 1, rank 0 leading).

    ``pmi_mode`` becomes ``--mpi=<mode>`` (None: the cluster's MpiDefault); ``overcommit`` (the executor's
    ``openmpi_oversubscribe``) becomes ``--overcommit``, which lets a step have more tasks than CPUs (srun's
    ``--oversubscribe`` would only share nodes with other jobs). srun's stderr is copied to ours and its tail
    kept, so a step SLURM ends (TIMEOUT, CANCELLED, ...) fails its Future with that state named.
    """

    pmi_mode: str | None = None
    overcommit: bool = False
    srun: str = "srun"
    keep_stderr: int = SRUN_STDERR_TAIL
    same_host = False  # steps may run on any node of the allocation
    enforces_run_time_max = True  # srun --time
    gpus = None  # srun --gpus-per-task assigns each step its devices

    def spawner(self, resources: Resources, *, env: dict[str, str], keep_stderr: int) -> SubprocessSpawner:
        return SubprocessSpawner(cwd=resources.cwd, env=env, keep_stderr=keep_stderr)

    def close(self) -> None:
        pass  # nothing kept between workers

    def prestarts(self, resources: Resources) -> bool:
        return False  # an idle srun step would hold cores of the allocation that SLURM counts as used

    def check(self, resources: Resources, *, where: str) -> None:
        if resources.cores == 1:
            return
        from xl_spawn import mpi4py_available

        if not mpi4py_available():
            raise ResourceDictError(
                f"{where}: resource_dict['cores'] = {resources.cores} starts {resources.cores} MPI ranks with srun, "
                "and each runs the worker with mpi4py, which is not installed: pip install mpi4py (built against "
                "the cluster's MPI), or use cores=1"
            )

    def key_directory(self, resources: Resources) -> str | None:
        """This host's temporary directory when the step runs here (an allocation of one node); else the step's
        working directory (its ``cwd``, or ours), which srun needs the step's hosts to see as well."""
        if single_node(os.environ) and resources.num_nodes in (None, 1):
            return None
        return resources.cwd or os.getcwd()

    def argv(self, resources: Resources, worker_args: Sequence[str]) -> list[str]:
        from xl_spawn import SrunRequest, srun_argv

        request = SrunRequest(
            cores=resources.cores,
            threads_per_core=resources.threads_per_core,
            gpus_per_core=resources.gpus_per_core,
            num_nodes=resources.num_nodes,
            exclusive=resources.exclusive,
            run_time_max=resources.run_time_max,
            pmi_mode=self.pmi_mode,
            cwd=resources.cwd,
            overcommit=self.overcommit,
            extra_args=resources.slurm_cmd_args,
        )
        args = [*worker_args, "--mpi"] if resources.cores > 1 else list(worker_args)
        return srun_argv(request, python_module_argv(WORKER_MODULE, args), srun=self.srun)

"""FluxLauncher: each worker is one flux job (FluxJobExecutor); also the instance's size, the keys flux cannot
honour, and for batch jobs the ``flux run`` that runs a task on its ranks (:func:`flux_job_step`).

Pure functions and a small launcher object; the executor (executors/flux.py) hands it to the same schedulers
SingleNodeExecutor uses. The flux bindings load only when an instance is asked about or a job submitted.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xl_spawn import python_module_argv

from executorlib.errors import ResourceDictError
from executorlib.launchers.local import WORKER_MODULE
from executorlib.resources import ExecutorRules, Resources

FLUX_JOB_RULES = ExecutorRules(
    executor="FluxJobExecutor",
    unsupported={
        "slurm_cmd_args": "these are srun arguments; flux jobs take none (use SlurmJobExecutor on SLURM)",
        "submission_template": "it submits no batch jobs; use FluxClusterExecutor",
    },
)

#: Bytes of a job's stderr (from the instance, or its log file) kept for the message of a worker that died.
FLUX_STDERR_TAIL = 8192

_EXCEPTION_LINE = re.compile(r"^flux job exception .*$", re.MULTILINE)


@dataclass(frozen=True)
class FluxInstance:
    """The flux instance this process talks to (``FLUX_URI``) and what it has."""

    uri: str
    nodes: int
    cores: int
    gpus: int

    def describe(self) -> str:
        return f"the flux instance at {self.uri} has {self.nodes} node(s), {self.cores} core(s), {self.gpus} GPU(s)"


def flux_outside_message(executor: str, problem: object) -> str:
    uri = os.environ.get("FLUX_URI")
    where = f"FLUX_URI={uri} does not answer" if uri else "FLUX_URI is not set and no system instance answers"
    return (
        f"{executor} runs its calls as jobs of a flux instance, but {where} ({problem}); run this script inside "
        "one (`flux start python script.py`, `flux alloc -N2 ...`, or a flux batch job), or use SingleNodeExecutor "
        "on this machine"
    )


def current_instance(executor: str) -> FluxInstance:
    """The instance at ``FLUX_URI`` (or the system instance) and its resources; a clear error outside any."""
    from xl_spawn import import_flux

    import_flux()  # a clear ImportError without the bindings
    import flux
    import flux.resource

    try:
        handle = flux.Flux()
        listing = flux.resource.resource_list(handle).get()
        uri = str(handle.attr_get("local-uri"))
    except OSError as problem:
        raise RuntimeError(flux_outside_message(executor, problem)) from problem
    everything = listing.all
    return FluxInstance(uri=uri, nodes=int(everything.nnodes), cores=int(everything.ncores), gpus=int(everything.ngpus))


def flux_exception(stderr_tail: str) -> str | None:
    """The ``flux job exception type=...: note`` line a flux spawner appends to its stderr tail, if any."""
    found = _EXCEPTION_LINE.findall(stderr_tail)
    return found[-1] if found else None


def flux_job_step(resources: Resources, command: Sequence[str], *, pmi_mode: str | None) -> list[str]:
    """``command`` as a flux batch job sized for ``resources`` runs it: as is for one core, else under ``flux run``
    on every rank of the batch job's own instance.

    >>> flux_job_step(Resources(cores=2, threads_per_core=2), ["python", "w.py"], pmi_mode="pmi2")
    ['flux', 'run', '--ntasks=2', '--cores-per-task=2', '-o', 'pmi=pmi2', 'python', 'w.py']
    """
    if resources.cores == 1:
        return list(command)
    argv = ["flux", "run", f"--ntasks={resources.cores}", f"--cores-per-task={resources.threads_per_core}"]
    if resources.gpus_per_core:
        argv.append(f"--gpus-per-task={resources.gpus_per_core}")
    if resources.num_nodes is not None:
        argv.append(f"--nodes={resources.num_nodes}")
    if pmi_mode:
        argv += ["-o", f"pmi={pmi_mode}"]
    return [*argv, *command]


def request_of(resources: Resources, *, pmi_mode: str | None, where: str) -> Any:
    """The :class:`xl_spawn.FluxRequest` of ``resources``; flux's own rules broken are a ResourceDictError."""
    from xl_spawn import FluxRequest

    try:
        return FluxRequest.from_resources(
            cores=resources.cores,
            threads_per_core=resources.threads_per_core,
            gpus_per_core=resources.gpus_per_core,
            num_nodes=resources.num_nodes,
            exclusive=resources.exclusive,
            run_time_max=resources.run_time_max,
            priority=resources.priority,
            cwd=resources.cwd,
            pmi_mode=pmi_mode,
        )
    except ValueError as problem:
        raise ResourceDictError(f"{where}: {problem}") from problem


def check_fits(instance: FluxInstance, resources: Resources, *, where: str) -> None:
    """A request the instance can never satisfy would fail in flux (or wait forever): reject it now."""
    needed = {
        "cores": (resources.cpus, instance.cores, "cores x threads_per_core"),
        "nodes": (resources.num_nodes or 1, instance.nodes, "num_nodes"),
        "GPUs": (resources.cores * resources.gpus_per_core, instance.gpus, "cores x gpus_per_core"),
    }
    for what, (asked, has, how) in needed.items():
        if asked > has:
            raise ResourceDictError(
                f"{where}: this task asks for {asked} {what} ({how}) but {instance.describe()}; lower the request, "
                "or run in a larger instance (flux alloc / flux batch with more resources)"
            )


_log_numbers = itertools.count()


@dataclass
class FluxLauncher:
    """Each worker is one flux job running ``python -m xl_comm.worker [...] [--mpi]`` on ``cores`` tasks of
    ``threads_per_core`` cores each (the worker runs on every rank when cores > 1, rank 0 leading), with the
    jobspec's ``duration`` (``run_time_max``) and urgency (``priority``).

    ``pmi_mode`` is the job shell's ``pmi`` option; ``flux_executor`` a ``flux.job.FluxExecutor`` of the caller's
    (else one shared per process); ``nested`` makes each worker a flux instance of its own
    (``flux_executor_nesting``); ``log_files`` writes each worker's stdout and stderr to ``flux_<n>.out`` and
    ``flux_<n>.err`` in its working directory (executorlib 1.x's names), else they stay in the instance.
    """

    instance: FluxInstance
    pmi_mode: str | None = None
    flux_executor: Any = None
    nested: bool = False
    log_files: bool = False
    keep_stderr: int = FLUX_STDERR_TAIL
    same_host = False  # a job's process is not our child (no pid, no lifeline), wherever it runs
    enforces_run_time_max = True  # the jobspec's duration
    gpus = None  # flux assigns each job its devices
    _checked: set[Resources] = field(default_factory=set, repr=False)

    def close(self) -> None:
        pass  # nothing kept between workers

    def prestarts(self, resources: Resources) -> bool:
        return False  # an idle flux job would hold cores of the instance that flux counts as used

    def check(self, resources: Resources, *, where: str) -> None:
        if resources in self._checked:
            return
        request_of(resources, pmi_mode=self.pmi_mode, where=where)
        check_fits(self.instance, resources, where=where)
        if resources.cores > 1:
            from xl_spawn import mpi4py_available

            if not mpi4py_available():
                raise ResourceDictError(
                    f"{where}: resource_dict['cores'] = {resources.cores} starts {resources.cores} MPI ranks as flux "
                    "tasks, and each runs the worker with mpi4py, which is not installed: pip install mpi4py (or "
                    "mpich and mpi4py from conda-forge), or use cores=1"
                )
        self._checked.add(resources)

    def key_directory(self, resources: Resources) -> str | None:
        """This host's temporary directory when the instance has one node; else the job's working directory,
        which every node of the job must see (as flux's own cwd handling assumes)."""
        if self.instance.nodes == 1:
            return None
        return resources.cwd or os.getcwd()

    def argv(self, resources: Resources, worker_args: Sequence[str]) -> list[str]:
        args = [*worker_args, "--mpi"] if resources.cores > 1 else list(worker_args)
        return python_module_argv(WORKER_MODULE, args)

    def spawner(self, resources: Resources, *, env: dict[str, str], keep_stderr: int) -> Any:
        from dataclasses import replace

        from xl_spawn import FluxJobSpawner

        request = request_of(resources, pmi_mode=self.pmi_mode, where="FluxJobExecutor")
        if self.log_files:
            directory = os.path.abspath(resources.cwd or os.getcwd())
            name = f"flux_{next(_log_numbers)}"
            request = replace(
                request,
                stdout=os.path.join(directory, f"{name}.out"),
                stderr=os.path.join(directory, f"{name}.err"),
            )
        return FluxJobSpawner(
            request,
            cwd=resources.cwd,
            env=env,
            keep_stderr=keep_stderr,
            flux_executor=self.flux_executor,
            nested=self.nested,
        )

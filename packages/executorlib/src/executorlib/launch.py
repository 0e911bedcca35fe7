"""How an executor turns one worker's resources into a command line and an environment.

A launch is chosen once per executor (local processes and mpiexec, or srun inside a SLURM allocation) and handed
to its scheduler; the schedulers do not know which one they run.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from xl_spawn import python_module_argv

from executorlib.errors import ResourceDictError
from executorlib.resources import Resources

WORKER_MODULE = "xl_comm.worker"


class Launch(Protocol):
    def check(self, resources: Resources, *, where: str) -> None:
        """Reject, at submit time, a request this launch cannot start (e.g. MPI ranks without mpi4py)."""

    def argv(self, resources: Resources, worker_args: Sequence[str]) -> list[str]:
        """The command that starts one worker with ``resources``."""

    def key_directory(self, resources: Resources) -> str | None:
        """Where the worker's key file is made (see xl_comm.keys): a directory its host sees, or None for this
        host's temporary directory."""


@dataclass
class LocalLaunch:
    """``python -m xl_comm.worker`` for one core; ``mpiexec -n N ... --mpi`` for N ranks (SingleNodeExecutor)."""

    openmpi_oversubscribe: bool = False
    _mpiexec: str | None = field(default=None, init=False)

    def check_oversubscribe(self) -> None:
        """At construction: openmpi_oversubscribe with an MPICH launcher would be mpiexec's exit 255 later."""
        if self.openmpi_oversubscribe and self._launcher() is not None:
            self.argv(Resources(cores=2), [])  # raises the flavour's rule and fix

    def check(self, resources: Resources, *, where: str) -> None:
        if resources.cores == 1:
            return
        from xl_spawn import mpi4py_available, mpi_missing_message

        has_mpi4py, launcher = mpi4py_available(), self._launcher()
        if not has_mpi4py or launcher is None:
            raise ResourceDictError(
                f"{where}: resource_dict['cores'] = {resources.cores}: "
                + mpi_missing_message(resources.cores, mpi4py=has_mpi4py, mpiexec=launcher is not None)
            )

    def key_directory(self, resources: Resources) -> str | None:
        return None  # every worker runs on this host

    def argv(self, resources: Resources, worker_args: Sequence[str]) -> list[str]:
        if resources.cores == 1:
            return python_module_argv(WORKER_MODULE, worker_args)
        return self.on_ranks(resources.cores, python_module_argv(WORKER_MODULE, [*worker_args, "--mpi"]))

    def on_ranks(self, cores: int, command: Sequence[str]) -> list[str]:
        """``command`` as it is for one core, else under ``mpiexec -n cores`` with this machine's MPI's flags."""
        if cores == 1:
            return list(command)
        from xl_spawn import detect_mpi_flavour, mpiexec_argv

        launcher = self._launcher()
        if launcher is None:
            raise RuntimeError("no mpiexec found (pip install mpich, or put your MPI's bin directory on PATH)")
        return mpiexec_argv(
            cores,
            command,
            flavour=detect_mpi_flavour(launcher),
            oversubscribe=self.openmpi_oversubscribe,
            launcher=launcher,
        )

    def _launcher(self) -> str | None:
        if self._mpiexec is None:
            from xl_spawn import find_mpiexec

            self._mpiexec = find_mpiexec()
        return self._mpiexec


# -- GPUs on one node: pure functions, property-tested -----------------------------------------------------------


def visible_gpus(environ: Mapping[str, str], nvidia_smi_listing: str | None) -> tuple[str, ...]:
    """The GPU devices this process may hand out: ``CUDA_VISIBLE_DEVICES`` when set (the site or the batch
    system chose them), else the indices that ``nvidia-smi -L`` lists, else none."""
    chosen = environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        devices = tuple(item.strip() for item in chosen.split(",") if item.strip())
        # "-1" (or any negative id) is CUDA's way of hiding every device
        return () if any(device.startswith("-") for device in devices) else devices
    if not nvidia_smi_listing:
        return ()
    return tuple(str(index) for index, line in enumerate(nvidia_smi_listing.splitlines()) if line.startswith("GPU "))


@functools.cache
def nvidia_smi_listing() -> str | None:
    """``nvidia-smi -L`` output, or None when there is no NVIDIA driver here."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gpus_needed(resources: Resources) -> int:
    """Devices one task holds: ``gpus_per_core`` for each of its MPI ranks."""
    return resources.cores * resources.gpus_per_core


def check_gpus(resources: Resources, visible: Sequence[str], *, where: str) -> None:
    needed = gpus_needed(resources)
    if needed > len(visible):
        raise ResourceDictError(
            f"{where}: resource_dict['gpus_per_core'] = {resources.gpus_per_core} with cores = {resources.cores} "
            f"needs {needed} GPU(s), but {len(visible)} {'is' if len(visible) == 1 else 'are'} visible here "
            f"({', '.join(visible) or 'none'}; from CUDA_VISIBLE_DEVICES or nvidia-smi); lower the request, or "
            "use SlurmJobExecutor or a cluster executor to get GPUs from the batch system"
        )


def block_gpus(workers: int, needed: int, visible: Sequence[str]) -> list[tuple[str, ...]]:
    """Devices of each block-allocation worker: disjoint, in order; ValueError when they do not suffice."""
    if workers * needed > len(visible):
        raise ValueError(
            f"{workers} workers with {needed} GPU(s) each need {workers * needed} GPUs, but {len(visible)} "
            f"{'is' if len(visible) == 1 else 'are'} visible ({', '.join(visible) or 'none'}); lower max_workers "
            "or gpus_per_core"
        )
    return [tuple(visible[slot * needed : (slot + 1) * needed]) for slot in range(workers)]


def gpu_env(devices: Sequence[str]) -> dict[str, str]:
    """The worker's CUDA_VISIBLE_DEVICES (nothing when the task asked for no GPU: it keeps what it inherits)."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(devices)} if devices else {}


def host_gpus() -> tuple[str, ...]:
    return visible_gpus(os.environ, None if "CUDA_VISIBLE_DEVICES" in os.environ else nvidia_smi_listing())

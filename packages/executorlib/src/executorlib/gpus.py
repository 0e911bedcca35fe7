"""GPUs on one node: which devices this host may hand out, and how they are split among tasks and workers.

Pure functions (property-tested) but for the ``nvidia-smi`` call; launchers whose resource manager assigns devices
itself (srun, flux, batch jobs) use none of this.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from executorlib.errors import ResourceDictError
from executorlib.resources import Resources


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

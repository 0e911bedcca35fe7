"""LocalLauncher: workers as local processes, under mpiexec for MPI ranks (SingleNodeExecutor)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from xl_spawn import ForkServer, SubprocessSpawner, python_module_argv

from executorlib.errors import MissingMpiError, ResourceDictError
from executorlib.gpus import host_gpus
from executorlib.launchers.protocol import WorkerSpawner
from executorlib.resources import Resources

WORKER_MODULE = "xl_comm.worker"


@dataclass
class LocalLauncher:
    """``python -m xl_comm.worker`` for one core; ``mpiexec -n N ... --mpi`` for N ranks. The schedulers hand out
    this host's GPUs and enforce ``run_time_max``; nothing else would.

    With ``fork`` a one-core worker is forked from a warm parent (xl_spawn's fork server, started for the second
    worker and stopped by ``close``) that has imported the worker's modules once: a fresh process, which never ran user
    code, running in about a millisecond instead of an interpreter start plus imports."""

    openmpi_oversubscribe: bool = False
    fork: bool = False
    same_host = True
    keep_stderr = 0
    enforces_run_time_max = False
    gpus: tuple[str, ...] = field(default_factory=host_gpus)
    _mpiexec: str | None = field(default=None, init=False)
    _forks: ForkServer | None = field(default=None, init=False)
    _started_plain: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def spawner(self, resources: Resources, *, env: dict[str, str], keep_stderr: int) -> WorkerSpawner:
        if self.fork and resources.cores == 1 and not keep_stderr:
            with self._lock:
                if self._forks is not None:
                    return self._forks.spawner(cwd=resources.cwd, env=env)
                if self._started_plain:
                    self._forks = ForkServer([WORKER_MODULE])
                    self._forks.start()
                    return self._forks.spawner(cwd=resources.cwd, env=env)
                # The first worker starts as a plain process, and the fork server only with the second (usually
                # the spare started ahead): waiting for the server, or starting it beside the first worker on a
                # small machine, would add to the first result (measured: about 20 ms on 2 cores).
                self._started_plain = True
        return SubprocessSpawner(cwd=resources.cwd, env=env, keep_stderr=keep_stderr)

    def close(self) -> None:
        with self._lock:
            forks, self._forks = self._forks, None
        if forks is not None:
            forks.close()

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
            error = ResourceDictError if has_mpi4py else MissingMpiError
            raise error(
                f"{where}: resource_dict['cores'] = {resources.cores}: "
                + mpi_missing_message(resources.cores, mpi4py=has_mpi4py, mpiexec=launcher is not None)
            )

    def prestarts(self, resources: Resources) -> bool:
        # One local process holds nothing until it runs a task; an MPI team would (ranks spin in a collective call).
        return resources.cores == 1

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

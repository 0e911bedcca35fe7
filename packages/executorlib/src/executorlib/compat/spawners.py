"""executorlib 1.x's spawners: start one worker command, tell whether it runs, stop it.

Subclasses (pyiron's conda_subprocess) override ``bootup``, put their own ``subprocess.Popen`` into
``self._process`` and rely on ``poll`` and ``shutdown`` working on it; so the state is exactly 1.x's attributes.
Safer than 1.x: ``PYTHONPATH`` is set in the child's environment only (1.x edited ``os.environ``), the child leads
its own process group, and ``shutdown`` stops the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable

from xl_spawn import find_mpiexec, prepend_path

from executorlib.compat.wire import api_key

#: Seconds ``shutdown(wait=True)`` lets a worker that was told to stop exit by itself (1.x waited forever).
EXIT_GRACE_SECONDS = 2.0
#: Seconds between SIGTERM and SIGKILL.
TERMINATE_SECONDS = 5.0


class SubprocessSpawner:
    """Runs a worker command as a local process.

    Args:
        cwd: Working directory of the process, created by ``bootup`` if missing. None (default): this process's.
        cores: MPI ranks of the worker; used by ``MpiExecSpawner`` (this class starts one process). Default 1.
        worker_id: The worker's number, kept for subclasses and for the worker's ``--worker-id``. Default 0.
        openmpi_oversubscribe: ``MpiExecSpawner`` adds ``--oversubscribe`` (Open MPI) when ``cores`` > 1. Default
            False.
        threads_per_core: CPUs for each rank, kept for subclasses (a local process is not pinned). Default 1.
    """

    def __init__(
        self,
        cwd: str | None = None,
        cores: int = 1,
        worker_id: int = 0,
        openmpi_oversubscribe: bool = False,
        threads_per_core: int = 1,
    ) -> None:
        self._cwd = cwd
        self._cores = cores
        self._worker_id = worker_id
        self._openmpi_oversubscribe = openmpi_oversubscribe
        self._threads_per_core = threads_per_core
        self._process: subprocess.Popen[bytes] | None = None

    def bootup(self, command_lst: list[str], stop_function: Callable[[], bool] | None = None) -> bool:
        """Start the command; True if it runs. ``stop_function`` is for queue-based spawners (stop waiting for a
        job to start); a local process starts at once, so it is not used here."""
        if self._cwd is not None:
            os.makedirs(self._cwd, exist_ok=True)
        self._process = subprocess.Popen(
            self._launcher(self.generate_command(command_lst=command_lst)),
            cwd=self._cwd,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, which shutdown() stops as a whole
        )
        return self.poll()

    def generate_command(self, command_lst: list[str]) -> list[str]:
        """The command as it is started (unchanged here; MpiExecSpawner prepends mpiexec)."""
        return command_lst

    def _launcher(self, argv: list[str]) -> list[str]:
        return argv

    def poll(self) -> bool:
        """True while the process runs."""
        return self._process is not None and self._process.poll() is None

    def shutdown(self, wait: bool = True) -> None:
        """Stop the process (and its group, when it leads one); with ``wait``, reap it first."""
        process, self._process = self._process, None
        if process is None:
            return
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(EXIT_GRACE_SECONDS)  # it was most likely told to stop and is exiting
        _signal(process, signal.SIGTERM)
        if wait:
            try:
                process.wait(TERMINATE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait()


class MpiExecSpawner(SubprocessSpawner):
    """Runs a worker command on ``cores`` MPI ranks through ``mpiexec`` (one process for ``cores=1``).

    Args:
        cwd: Working directory of the process, created by ``bootup`` if missing. None (default): this process's.
        cores: MPI ranks: ``cores`` > 1 starts ``mpiexec -n <cores> <command>``. Default 1.
        worker_id: The worker's number, kept for subclasses and for the worker's ``--worker-id``. Default 0.
        openmpi_oversubscribe: True adds ``--oversubscribe`` after ``-n <cores>`` (Open MPI). Default False.
        threads_per_core: CPUs for each rank, kept for subclasses (mpiexec is given no binding). Default 1.
    """

    def generate_command(self, command_lst: list[str]) -> list[str]:
        if self._cores <= 1:
            return command_lst
        oversubscribe = ["--oversubscribe"] if self._openmpi_oversubscribe else []
        return ["mpiexec", "-n", str(self._cores), *oversubscribe, *command_lst]

    def _launcher(self, argv: list[str]) -> list[str]:
        # Callers see the literal "mpiexec"; the one beside this interpreter (an MPI wheel's) runs if there is one.
        if argv and argv[0] == "mpiexec":
            return [find_mpiexec() or "mpiexec", *argv[1:]]
        return argv


class SrunSpawner(SubprocessSpawner):
    """Runs a worker command as a SLURM job step (``srun``), with executorlib 1.x's constructor: the spawner class
    that ``SlurmJobExecutor.info`` names. The command comes from xl_spawn's srun builder."""

    def __init__(
        self,
        cwd: str | None = None,
        cores: int = 1,
        threads_per_core: int = 1,
        gpus_per_core: int = 0,
        num_nodes: int | None = None,
        worker_id: int = 0,
        exclusive: bool = False,
        openmpi_oversubscribe: bool = False,
        slurm_cmd_args: list[str] | None = None,
        pmi_mode: str | None = None,
        run_time_max: int | None = None,
    ) -> None:
        super().__init__(cwd, cores, worker_id, openmpi_oversubscribe, threads_per_core)
        self._gpus_per_core = gpus_per_core
        self._num_nodes = num_nodes
        self._exclusive = exclusive
        self._slurm_cmd_args = slurm_cmd_args
        self._pmi_mode = pmi_mode
        self._run_time_max = run_time_max

    def generate_command(self, command_lst: list[str]) -> list[str]:
        from xl_spawn import SrunRequest, srun_argv

        request = SrunRequest(
            cores=self._cores,
            threads_per_core=self._threads_per_core,
            gpus_per_core=self._gpus_per_core,
            num_nodes=self._num_nodes,
            exclusive=self._exclusive,
            run_time_max=self._run_time_max,
            pmi_mode=self._pmi_mode,
            cwd=self._cwd,
            overcommit=self._openmpi_oversubscribe,
            extra_args=self._slurm_cmd_args or (),
        )
        return srun_argv(request, command_lst)


def child_environment() -> dict[str, str]:
    """Our environment with the submitter's cwd first on ``PYTHONPATH`` (so the worker imports what the
    submitting script imports) and the API key present."""
    api_key()
    env = dict(os.environ)
    env["PYTHONPATH"] = prepend_path(env.get("PYTHONPATH"), os.getcwd())
    return env


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Signal the process's group when it leads one of its own (ours do; a subclass's Popen may not)."""
    if process.poll() is not None and signum == signal.SIGTERM:
        return
    try:
        if os.getpgid(process.pid) == process.pid != os.getpgrp():
            os.killpg(process.pid, signum)
            return
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)

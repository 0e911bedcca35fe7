"""A handle on the project's SLURM test cluster (``scripts/slurm-cluster.sh``) for tests.

``ensure_cluster()`` starts the cluster (a no-op of ~0.05 s when it is up) and returns a ``SlurmCluster``, or raises
``SlurmUnavailable`` with the script's reason when SLURM cannot run on this machine (not root, no apt/network).
Every call here that blocks has a timeout; a job started by a helper that times out is cancelled by its name, so
a hung test leaves no allocation behind.

Facts behind the defaults (single node, 2 real cores declared as 8 CPUs, partition ``debug``, ``MpiDefault=pmi2``,
no slurmdbd): /work/shared/notes/slurm.md and the comments in scripts/slurm-cluster.sh.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xl_spawn.sbatch import FINAL_STATES  # states after which a job never changes again

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
# A first start on a machine without SLURM installs it with apt (about 8 s measured; allow for slow mirrors).
START_TIMEOUT = 900.0


class SlurmUnavailable(Exception):
    """SLURM cannot run on this machine; the message is the script's reason (tests skip with it)."""


class SlurmCommandError(RuntimeError):
    """A SLURM command failed; the message carries its command line, exit status and output."""


def _describe(args: Sequence[str], rc: int | str, out: str | bytes | None, err: str | bytes | None) -> str:
    def text(value: str | bytes | None) -> str:
        if value is None:
            return ""
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    return f"{' '.join(args)!r} -> {rc}\n--- stdout\n{text(out)[-3000:]}\n--- stderr\n{text(err)[-3000:]}"


def ensure_cluster(timeout: float = START_TIMEOUT) -> SlurmCluster:
    """Start the cluster if it is not up (idempotent) and describe it."""
    reason = os.environ.get("XL_SLURM_UNAVAILABLE")
    if reason:  # scripts/test.sh already asked the script, which said it cannot run here
        raise SlurmUnavailable(reason)
    proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 3:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise SlurmUnavailable(lines[-1] if lines else "scripts/slurm-cluster.sh: SLURM cannot run here")
    if proc.returncode != 0:
        raise SlurmCommandError(_describe(["bash", str(SCRIPT), "start"], proc.returncode, proc.stdout, proc.stderr))
    return SlurmCluster.describe()


@dataclass(frozen=True)
class SlurmCluster:
    """The running test cluster: where jobs go, and helpers that run commands in it with timeouts."""

    partition: str
    node: str
    cpus: int  # CPUs the node declares (more than real cores, so one-CPU jobs and steps oversubscribe)
    real_cpus: int
    conf: Path = Path("/etc/slurm/slurm.conf")
    python: str = sys.executable  # the venv's python: mpi4py + the mpich wheel (srun --mpi=pmi2 wires its ranks)

    @classmethod
    def describe(cls) -> SlurmCluster:
        out = _check(["sinfo", "-h", "-o", "%R|%N|%c|%T"], timeout=30).stdout
        default = _check(["scontrol", "show", "partition", "-o"], timeout=30).stdout
        first = out.splitlines()[0].split("|")
        match = re.search(r"PartitionName=(\S+).*Default=YES", default)
        return cls(
            partition=match.group(1) if match else first[0],
            node=first[1],
            cpus=int(first[2]),
            real_cpus=os.cpu_count() or 1,
        )

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment with the venv's bin first on PATH (its mpiexec, python)."""
        env = dict(os.environ)
        env["PATH"] = f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra or {})
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        check: bool = True,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        job_name: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command; on a timeout, cancel the jobs named ``job_name`` before raising."""
        try:
            proc = subprocess.run(
                list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=self.env(env)
            )
        except subprocess.TimeoutExpired as exc:
            if job_name is not None:
                self.cancel_name(job_name)
            message = f"timed out after {timeout} s: " + _describe(args, "?", exc.stdout, exc.stderr)
            raise SlurmCommandError(message) from exc
        if check and proc.returncode != 0:
            raise SlurmCommandError(_describe(args, proc.returncode, proc.stdout, proc.stderr))
        return proc

    @staticmethod
    def unique_name(prefix: str = "xltest") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def srun(
        self,
        command: Sequence[str],
        *,
        ntasks: int = 1,
        options: Sequence[str] = (),
        timeout: float = 60.0,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``srun -n ntasks [options] command`` (its own allocation outside a job, a step inside one)."""
        name = name or self.unique_name()
        args = ["srun", f"--partition={self.partition}", f"--job-name={name}", "--time=10", f"--ntasks={ntasks}"]
        return self.run([*args, *options, *command], timeout=timeout, cwd=cwd, env=env, job_name=name)

    def salloc(
        self,
        command: str,
        *,
        ntasks: int = 2,
        options: Sequence[str] = (),
        timeout: float = 60.0,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the shell ``command`` inside a fresh ``salloc -n ntasks`` allocation (srun in it makes steps)."""
        name = name or self.unique_name()
        args = ["salloc", f"--partition={self.partition}", f"--job-name={name}", "--time=10", f"--ntasks={ntasks}"]
        return self.run([*args, *options, "bash", "-c", command], timeout=timeout, cwd=cwd, env=env, job_name=name)

    def sbatch(
        self,
        command: str,
        *,
        options: Sequence[str] = (),
        timeout: float = 30.0,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Submit ``sbatch --wrap command``; return the job id at once (see ``wait_final``)."""
        args = ["sbatch", "--parsable", f"--partition={self.partition}", *options, "--wrap", command]
        out = self.run(args, timeout=timeout, cwd=cwd, env=env).stdout.strip()
        return int(out.split(";")[0])

    def job_info(self, job_id: int) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, Reason, ExitCode, ...); {} once the record is gone."""
        proc = self.run(["scontrol", "show", "job", "-o", str(job_id)], timeout=30, check=False)
        if proc.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))

    def job_state(self, job_id: int) -> str:
        return self.job_info(job_id).get("JobState", "")

    def wait_final(self, job_id: int, *, timeout: float) -> dict[str, str]:
        """Poll until the job reaches a final state; return its ``scontrol show job`` record."""
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job_info(job_id)
            if info.get("JobState") in FINAL_STATES:
                return info
            time.sleep(0.2)
        self.run(["scancel", str(job_id)], timeout=30, check=False)
        raise SlurmCommandError(f"job {job_id} not finished after {timeout} s (cancelled it); last record: {info}")

    def cancel_name(self, name: str) -> None:
        self.run(["scancel", f"--name={name}"], timeout=30, check=False)


def _check(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SlurmCommandError(_describe(args, proc.returncode, proc.stdout, proc.stderr))
    return proc

"""The srun step of a batch job sized for its task (SlurmClusterExecutor, file mode and block workers)."""

from __future__ import annotations

from executorlib.launchers.srun import batch_job_step
from executorlib.resources import Resources
from hypothesis import given
from hypothesis import strategies as st

COMMAND = ["python", "-m", "xl_cache.worker", "/cache/k_i.h5"]


@given(st.integers(1, 512), st.integers(1, 16), st.none() | st.sampled_from(["", "pmi2", "pmix"]))
def test_one_step_over_every_rank(cores: int, threads: int, pmi_mode: str | None) -> None:
    argv = batch_job_step(Resources(cores=cores, threads_per_core=threads), COMMAND, pmi_mode=pmi_mode)
    if cores == 1:
        assert argv == COMMAND
        return
    assert argv[0] == "srun" and argv[-len(COMMAND) :] == COMMAND
    flags = argv[1 : -len(COMMAND)]
    assert f"--ntasks={cores}" in flags and f"--cpus-per-task={threads}" in flags
    assert ("--mpi=" + pmi_mode in flags) if pmi_mode else not any(f.startswith("--mpi") for f in flags)
    assert "--exact" not in flags  # the step is the whole job

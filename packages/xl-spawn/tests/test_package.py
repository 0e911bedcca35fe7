import subprocess
import sys

import xl_spawn


def test_public_names() -> None:
    assert set(xl_spawn.__all__) == {
        "describe_returncode",
        "exit_fd",
        "LIFELINE_VARIABLE",
        "UnwatchableProcessError",
        "python_module_argv",
        "thread_env",
        "prepend_path",
        "Spawner",
        "SubprocessSpawner",
        "ForkServer",
        "ForkedSpawner",
        "MpiFlavour",
        "detect_mpi_flavour",
        "find_mpiexec",
        "mpi4py_available",
        "mpi_missing_message",
        "mpiexec_argv",
        "parse_mpi_version_text",
        "SrunRequest",
        "describe_srun_exit",
        "parse_slurm_state",
        "srun_argv",
        "srun_time_minutes",
        "DEFAULT_SLURM_TEMPLATE",
        "JobState",
        "SlurmQueue",
        "SubmissionError",
        "job_script_variables",
        "render_job_script",
        "template_variables",
        "JOB_LOG_NAME",
        "JobEnd",
        "QueueWatcher",
        "pid_is_zombie",
        "pid_runs",
        "FluxJobFailure",
        "FluxJobPlan",
        "FluxJobSpawner",
        "FluxRequest",
        "flux_job_plan",
        "flux_jobspec",
        "flux_jobspec_dict",
        "import_flux",
        "DEFAULT_FLUX_TEMPLATE",
        "FluxBatchQueue",
        "flux_job_script_variables",
        "default_flux_script",
        "default_slurm_script",
        "render_flux_script",
    }
    for name in xl_spawn.__all__:
        assert getattr(xl_spawn, name) is not None
    assert xl_spawn.__version__


def test_imports_no_project_package_and_no_heavy_dependency() -> None:
    # Every public name loaded, then nothing from another project package, zmq, psutil or an MPI binding.
    code = (
        "import sys, xl_spawn; [getattr(xl_spawn, n) for n in xl_spawn.__all__]; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'xl_serial', 'xl_comm', 'xl_cache', 'xl_graph', 'executorlib', 'zmq', 'psutil', 'mpi4py', 'cloudpickle', "
        "'flux'}); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_mpi_slurm_and_flux_names_load_on_first_use() -> None:
    lazy = (
        "xl_spawn.mpi",
        "xl_spawn.srun",
        "xl_spawn.sbatch",
        "xl_spawn.batch",
        "xl_spawn.flux",
        "xl_spawn.flux_batch",
        "flux",
        "jinja2",
    )
    code = f"import sys, xl_spawn; print(sorted(m for m in {lazy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"

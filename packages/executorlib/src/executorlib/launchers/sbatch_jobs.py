"""SbatchJobLauncher: SLURM batch jobs as the jobs of the file-mode scheduler (``SlurmClusterExecutor``).

Each task is one ``sbatch`` job running ``python -m xl_cache.worker <key>_i.h5`` (under ``srun --ntasks=N`` for N
cores), its upstream jobs named in ``--dependency=afterok:A:B``. SLURM offers no events, so one
:class:`xl_spawn.QueueWatcher` per executor asks ``squeue -t all`` (then ``sacct``) about *all* watched jobs at
once, and looks for their output files (a stat each: finished jobs need no query) in between. A job's death thus
fails its Future at most ``xl_spawn.watcher.MAX_QUERY_INTERVAL`` plus one squeue after SLURM knows of it. A job
that ended TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED or FAILED without output fails its Future with that state,
its id and its log's last lines; a job pending on a dependency that can never be satisfied is cancelled and
failed the same way, so nothing waits forever.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from executorlib.launchers.protocol import user_import_paths
from executorlib.launchers.srun import batch_job_step
from executorlib.resources import Resources, check_template_keys
from executorlib.task_file import FileTask, JobEnd, record_queue_id

if TYPE_CHECKING:
    from xl_spawn import JobEnd as QueueEnd
    from xl_spawn import SlurmQueue


def check_job_script_keys(queue: SlurmQueue, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
    """Reject a ``resource_dict`` key that the job script in use would not read (a misspelt resource, mostly)."""
    if not extras:
        return
    template = resources.submission_template
    variables = queue.template_variables(template)
    if template is not None:
        what = "your submission_template"
    elif queue.pysqa_config_directory is not None:
        what = f"the queue templates of pysqa_config_directory {queue.pysqa_config_directory!r}"
    else:
        what = "the default SLURM job script template"
    check_template_keys(extras, variables, where=where, template=what)


def sbatch_variables(
    resources: Resources,
    extras: Mapping[str, Any],
    *,
    job_name: str,
    working_directory: str,
    command: str,
    dependency: Sequence[int] = (),
) -> dict[str, Any]:
    """The job script template's variables for one job sized for ``resources`` (``extras``: the caller's other
    template variables; ``job_name``, ``memory_max`` and ``partition`` among them win over the defaults)."""
    from xl_spawn import job_script_variables

    extras = dict(extras)
    return job_script_variables(
        job_name=str(extras.pop("job_name", job_name)),
        working_directory=working_directory,
        command=command,
        cores=resources.cores,
        dependency=dependency,
        run_time_max=resources.run_time_max,
        memory_max=extras.pop("memory_max", None),
        partition=extras.pop("partition", None),
        extra={
            **extras,
            "threads_per_core": resources.threads_per_core,
            "num_nodes": resources.num_nodes,
            "exclusive": resources.exclusive,
            "priority": resources.priority,
        },
    )


class SbatchJobLauncher:
    """Each task file is one sbatch job; see the module docstring."""

    name = "SLURM"

    def __init__(self, *, pysqa_config_directory: str | None = None, pmi_mode: str | None = None) -> None:
        from xl_spawn import QueueWatcher, SlurmQueue

        self.queue = SlurmQueue(pysqa_config_directory=pysqa_config_directory)
        self._pmi_mode = pmi_mode
        self._on_end: Callable[[FileTask, JobEnd], None] | None = None
        self._watcher = QueueWatcher(self.queue, name="executorlib-slurm-watcher")
        self._valid_templates: set[str] = set()

    @property
    def queries(self) -> int:
        """Status queries made (squeue and sacct calls), for benchmarks and tests."""
        return self._watcher.queries

    def bind(self, on_end: Callable[[FileTask, JobEnd], None], lock: threading.Lock) -> None:
        self._on_end = on_end

    def check(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        from xl_spawn import render_job_script

        template = resources.submission_template
        if template is not None and template not in self._valid_templates:
            try:
                render_job_script(template, {})
            except Exception as problem:
                raise ValueError(
                    f"{where}: resource_dict['submission_template'] is not a valid jinja2 template: {problem}"
                ) from problem
            self._valid_templates.add(template)
        check_job_script_keys(self.queue, resources, extras, where=where)

    def info(self) -> dict[str, Any]:
        return {"watched": len(self._watcher), "status_queries": self.queries}

    def command(self, task: FileTask) -> str:
        from xl_spawn import prepend_path

        argv = batch_job_step(
            task.resources, [sys.executable, "-m", "xl_cache.worker", task.input_file], pmi_mode=self._pmi_mode
        )
        path = prepend_path(os.environ.get("PYTHONPATH"), *user_import_paths())
        return f"export PYTHONPATH={shlex.quote(path)}\n{shlex.join(argv)}"

    def script_variables(self, task: FileTask, after: Sequence[int]) -> dict[str, Any]:
        return sbatch_variables(
            task.resources,
            task.extras,
            job_name=os.path.basename(task.cache_directory),
            working_directory=task.job_directory,
            command=self.command(task),
            dependency=after,
        )

    def start(self, task: FileTask, after: Sequence[FileTask]) -> None:
        dependency = [up.queue_id for up in after if up.queue_id is not None]
        variables = self.script_variables(task, dependency)
        task.queue_id = self.queue.submit(task.job_directory, variables, task.resources.submission_template)
        record_queue_id(task)  # in the task file, where get_cache_data shows it while the job is queued
        self._watch(task)

    def job_script(self, task: FileTask, after: Sequence[FileTask]) -> str:
        from xl_spawn import render_job_script

        variables = self.script_variables(task, [up.queue_id or 0 for up in after])
        return render_job_script(task.resources.submission_template, variables)

    def attach(self, task: FileTask) -> bool:
        assert task.queue_id is not None
        state = self.queue.states([task.queue_id]).get(task.queue_id)
        if state is None or state.final:
            return False
        self._watch(task)
        return True

    def _watch(self, task: FileTask) -> None:
        assert task.queue_id is not None and self._on_end is not None
        on_end = self._on_end

        def ended(end: QueueEnd) -> None:
            on_end(task, JobEnd(end.state, end.detail))

        output_file = task.output_file
        self._watcher.watch(task.queue_id, ended, done=lambda: os.path.exists(output_file))

    def cancel(self, task: FileTask) -> None:
        if task.queue_id is None:
            assert self._on_end is not None
            self._on_end(task, JobEnd("CANCELLED", "cancelled before it was submitted"))
            return
        self.queue.cancel([task.queue_id])
        self._watcher.hurry()

    def close(self, wait: bool) -> None:
        """Nothing to release: the watcher's thread ends once the jobs still watched ended."""

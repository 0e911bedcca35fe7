"""BatchJobLauncher: batch jobs as the jobs of the file-mode scheduler (``SlurmClusterExecutor`` with sbatch,
``FluxClusterExecutor`` with flux batch); what differs between the two is a :class:`BatchSystem`.

Each task is one batch job running ``python -m xl_cache.worker <key>_i.h5`` (under ``srun``/``flux run`` on N ranks
for N cores), its upstream jobs named as ``afterok`` dependencies. Neither system hands out events we can rely on
across processes, so one :class:`xl_spawn.QueueWatcher` per executor asks the queue (``squeue``/``sacct``, ``flux
jobs``) about *all* watched jobs at once, and looks for their output files (a stat each: finished jobs need no
query) in between. A job's death thus fails its Future at most ``xl_spawn.watcher.MAX_QUERY_INTERVAL`` plus one
query after the queue knows of it. A job that ended TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED or FAILED without
output fails its Future with that state, its id and its log's last lines; a job pending on a dependency that can
never be satisfied is cancelled and failed the same way, so nothing waits forever.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from executorlib.errors import missing_extra
from executorlib.launchers.protocol import user_import_paths
from executorlib.resources import Resources, check_template_keys
from executorlib.task_file import FileTask, JobEnd, record_queue_id

if TYPE_CHECKING:
    from xl_spawn import JobEnd as QueueEnd
    from xl_spawn import JobState


class BatchQueue(Protocol):
    """xl-spawn's queues (:class:`xl_spawn.SlurmQueue`, :class:`xl_spawn.FluxBatchQueue`)."""

    pysqa_config_directory: str | None

    def template_variables(self, template: str | None) -> frozenset[str] | None: ...

    def submit(self, working_directory: str, variables: Mapping[str, Any], template: str | None = None) -> int: ...

    def states(self, job_ids: Sequence[int]) -> dict[int, JobState]: ...

    def cancel(self, job_ids: Sequence[int]) -> None: ...


class ScriptVariables(Protocol):
    def __call__(
        self,
        resources: Resources,
        extras: Mapping[str, Any],
        *,
        job_name: str,
        working_directory: str,
        command: str,
        dependency: Sequence[int] = (),
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BatchSystem:
    """What differs between SLURM's and flux's batch jobs: the queue, how a task runs on its ranks inside the job
    (``step``: srun or flux run), the job script's variables, and the names in messages."""

    name: str  # "SLURM", "Flux": the resource manager in messages
    queue: BatchQueue
    step: Callable[[Resources, Sequence[str]], list[str]]
    variables: ScriptVariables
    default_script: Callable[[Mapping[str, Any]], str]  # the job script when no template is given (no jinja2)
    default_template_name: str  # how messages name it
    #: rejects at construction or submit() a request the system can never run (e.g. larger than the instance)
    check_request: Callable[[Resources, str], None] = lambda resources, where: None

    def render(self, template: str | None, variables: Mapping[str, Any]) -> str:
        """The job script of ``variables``: the user's jinja2 ``template``, or the built-in one."""
        if template is None:
            return self.default_script(variables)
        from xl_spawn import render_job_script

        return render_job_script(template, variables)


def require_cluster_extra(system: BatchSystem, template: str | None = None) -> None:
    """At construction, not at the first submit: a pysqa_config_directory is read by pysqa (with its jinja2
    templates), and a ``submission_template`` is a jinja2 template; both come with ``executorlib[cluster]``. The
    built-in job scripts need neither."""
    import importlib.util

    if template is not None and importlib.util.find_spec("jinja2") is None:
        raise missing_extra("a submission_template (a jinja2 template)", "jinja2", "cluster")
    if system.queue.pysqa_config_directory is not None and importlib.util.find_spec("pysqa") is None:
        raise missing_extra("pysqa_config_directory", "pysqa", "cluster")


def check_job_script_keys(system: BatchSystem, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
    """Reject a ``resource_dict`` key that the job script in use would not read (a misspelt resource, mostly)."""
    if not extras:
        return
    template = resources.submission_template
    queue = system.queue
    variables = queue.template_variables(template)
    if template is not None:
        what = "your submission_template"
    elif queue.pysqa_config_directory is not None:
        what = f"the queue templates of pysqa_config_directory {queue.pysqa_config_directory!r}"
    else:
        what = system.default_template_name
    check_template_keys(extras, variables, where=where, template=what)


class BatchJobLauncher:
    """Each task file is one batch job of ``system``; see the module docstring."""

    def __init__(self, system: BatchSystem) -> None:
        from xl_spawn import QueueWatcher

        require_cluster_extra(system)
        self.system = system
        self.name = system.name
        self.queue = system.queue
        self._on_end: Callable[[FileTask, JobEnd], None] | None = None
        self._watcher = QueueWatcher(system.queue, name=f"executorlib-{system.name.lower()}-watcher")
        self._valid_templates: set[str] = set()

    @property
    def queries(self) -> int:
        """Status queries made (squeue and sacct, or flux jobs, calls), for benchmarks and tests."""
        return self._watcher.queries

    def bind(self, on_end: Callable[[FileTask, JobEnd], None], lock: threading.Lock) -> None:
        self._on_end = on_end

    def check(self, resources: Resources, extras: Mapping[str, Any], *, where: str) -> None:
        from xl_spawn import render_job_script

        template = resources.submission_template
        if template is not None and template not in self._valid_templates:
            try:
                render_job_script(template, {})
            except ImportError as missing:
                raise missing_extra(f"{where}: a submission_template (a jinja2 template)", "jinja2", "cluster") from (
                    missing
                )
            except Exception as problem:
                raise ValueError(
                    f"{where}: resource_dict['submission_template'] is not a valid jinja2 template: {problem}"
                ) from problem
            self._valid_templates.add(template)
        check_job_script_keys(self.system, resources, extras, where=where)
        self.system.check_request(resources, where)

    def info(self) -> dict[str, Any]:
        return {"watched": len(self._watcher), "status_queries": self.queries}

    def command(self, task: FileTask) -> str:
        from xl_spawn import prepend_path

        argv = self.system.step(task.resources, [sys.executable, "-m", "xl_cache.worker", task.input_file])
        path = prepend_path(os.environ.get("PYTHONPATH"), *user_import_paths())
        return f"export PYTHONPATH={shlex.quote(path)}\n{shlex.join(argv)}"

    def script_variables(self, task: FileTask, after: Sequence[int]) -> dict[str, Any]:
        return self.system.variables(
            task.resources,
            task.extras,
            job_name=os.path.basename(os.path.dirname(task.working_directory)),
            working_directory=task.working_directory,
            command=self.command(task),
            dependency=after,
        )

    def start(self, task: FileTask, after: Sequence[FileTask]) -> None:
        dependency = [up.queue_id for up in after if up.queue_id is not None]
        task.bound_to = tuple((up, up.attempt) for up in after if up.queue_id is not None)
        variables = self.script_variables(task, dependency)
        os.makedirs(task.working_directory, mode=0o700, exist_ok=True)
        task.queue_id = self.queue.submit(task.working_directory, variables, task.resources.submission_template)
        record_queue_id(task)  # in the task file, where get_cache_data shows it while the job is queued
        self._watch(task)

    def job_script(self, task: FileTask, after: Sequence[FileTask]) -> str:
        variables = self.script_variables(task, [up.queue_id or 0 for up in after])
        return self.system.render(task.resources.submission_template, variables)

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

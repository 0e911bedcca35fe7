"""SLURM batch jobs as the jobs of the file-mode scheduler (``SlurmClusterExecutor``).

Each task is one ``sbatch`` job running ``python -m xl_cache.worker <key>_i.h5`` (under ``srun -n N`` for N
cores), its upstream jobs named in ``--dependency=afterok:A:B``. SLURM offers no events, so one watcher thread
per executor asks about *all* watched jobs at once. It looks for their output files (a stat each: finished jobs
need no query) at an interval that starts at ``MIN_INTERVAL`` after any submission or finished job and grows to
``MAX_INTERVAL`` while nothing changes; and it asks ``squeue -t all`` (then ``sacct`` for jobs squeue forgot) in
one call about the rest on a schedule of its own: from ``MIN_INTERVAL`` when the watcher starts (or after a
cancellation or a job's death, which may take its dependents along) growing to ``MAX_QUERY_INTERVAL``, and *not*
back to the minimum when jobs complete, so a steady stream of finishing jobs costs few queries. A job's death
thus fails its Future at most ``MAX_QUERY_INTERVAL`` plus one squeue after SLURM knows of it. A job
that ended TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED or FAILED without output fails its Future with that state,
its id and its log's last lines; a job pending on a dependency that can never be satisfied is cancelled and
failed the same way, so nothing waits forever.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from executorlib.resources import Resources, check_template_keys
from executorlib.schedulers.file import FileTask, JobEnd, record_queue_id

if TYPE_CHECKING:
    from xl_spawn import SlurmQueue

MIN_INTERVAL = 0.25
MAX_INTERVAL = 3.0
#: The longest wait between two status queries: a dead job fails its Future within this (plus one squeue).
MAX_QUERY_INTERVAL = 3.0
GROWTH = 1.5
#: Status queries a finished job may go without its output file before it counts as lost (shared file systems).
OUTPUT_GRACE_POLLS = 3


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


class SlurmQueueBackend:
    name = "SLURM"

    def __init__(self, *, pysqa_config_directory: str | None = None, pmi_mode: str | None = None) -> None:
        from xl_spawn import SlurmQueue

        self.queue = SlurmQueue(pysqa_config_directory=pysqa_config_directory)
        self._pmi_mode = pmi_mode
        self._on_end: Callable[[FileTask, JobEnd], None] | None = None
        self._cond = threading.Condition()
        self._watched: dict[int, FileTask] = {}
        self._misses: dict[int, int] = {}
        self._thread: threading.Thread | None = None
        self._interval = MIN_INTERVAL
        self._query_interval = MIN_INTERVAL
        self._next_query = 0.0  # time.monotonic() of the next status query
        self._stopping = False
        self._valid_templates: set[str] = set()
        self.queries = 0  # status queries made (squeue and sacct calls), for benchmarks and tests

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
        return {"watched": len(self._watched), "status_queries": self.queries}

    def command(self, task: FileTask) -> str:
        from xl_spawn import prepend_path

        from executorlib.schedulers.base import user_import_paths

        argv = [sys.executable, "-m", "xl_cache.worker", task.input_file]
        if task.resources.cores > 1:
            srun = ["srun", "-n", str(task.resources.cores)]
            if self._pmi_mode:
                srun.append(f"--mpi={self._pmi_mode}")
            if task.resources.threads_per_core > 1:
                srun.append(f"--cpus-per-task={task.resources.threads_per_core}")
            argv = [*srun, *argv]
        path = prepend_path(os.environ.get("PYTHONPATH"), *user_import_paths())
        return f"export PYTHONPATH={shlex.quote(path)}\n{shlex.join(argv)}"

    def script_variables(self, task: FileTask, after: Sequence[int]) -> dict[str, Any]:
        from xl_spawn import job_script_variables

        extras = dict(task.extras)
        resources = task.resources
        return job_script_variables(
            job_name=str(extras.pop("job_name", os.path.basename(task.cache_directory))),
            working_directory=task.job_directory,
            command=self.command(task),
            cores=resources.cores,
            dependency=after,
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

    def start(self, task: FileTask, after: Sequence[FileTask]) -> None:
        dependency = [up.queue_id for up in after if up.queue_id is not None]
        variables = self.script_variables(task, dependency)
        task.queue_id = self.queue.submit(task.job_directory, variables, task.resources.submission_template)
        record_queue_id(task)  # in the task file, where get_cache_data shows it while the job is queued
        self._watch(task)

    def dry_run(self, task: FileTask, after: Sequence[FileTask]) -> str:
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
        assert task.queue_id is not None
        with self._cond:
            if not self._watched:  # nothing was watched: start the query schedule afresh
                self._query_soon()
            self._watched[task.queue_id] = task
            self._interval = MIN_INTERVAL
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="executorlib-slurm-watcher", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def cancel(self, task: FileTask) -> None:
        if task.queue_id is None:
            assert self._on_end is not None
            self._on_end(task, JobEnd("CANCELLED", "cancelled before it was submitted"))
            return
        self.queue.cancel([task.queue_id])
        with self._cond:
            self._interval = MIN_INTERVAL
            self._query_soon()
            self._cond.notify_all()

    def close(self, wait: bool) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # -- the one watcher ---------------------------------------------------------------------------------------

    def _query_soon(self) -> None:
        """Restart the query schedule at its minimum (called with ``self._cond`` held)."""
        soon = time.monotonic() + MIN_INTERVAL
        self._query_interval = MIN_INTERVAL
        self._next_query = min(self._next_query, soon) if self._watched else soon

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping and not self._watched:
                    self._thread = None
                    return
                self._cond.wait(max(0.0, min(self._interval, self._next_query - time.monotonic())))
                watched = dict(self._watched)
                self._interval = min(self._interval * GROWTH, MAX_INTERVAL)
                now = time.monotonic()
                query = now >= self._next_query
                if query:
                    self._query_interval = min(self._query_interval * GROWTH, MAX_QUERY_INTERVAL)
                    self._next_query = now + self._query_interval
            if not watched:
                continue
            ended, died = self._check(watched, query)
            if ended:
                with self._cond:
                    for job in ended:
                        self._watched.pop(job, None)
                        self._misses.pop(job, None)
                    self._interval = MIN_INTERVAL  # more results may follow: keep looking at the files
                    if died:  # its dependents are cancelled by SLURM next: ask again soon
                        self._query_soon()

    def _check(self, watched: dict[int, FileTask], query: bool) -> tuple[list[int], bool]:
        """The jobs that ended (their output appeared, or, when ``query``, SLURM reports their end), and whether
        one of them died (ended without output)."""
        assert self._on_end is not None
        ended: list[int] = []
        for job, task in watched.items():  # a stat each: finished jobs need no query
            if os.path.exists(task.output_file):
                ended.append(job)
                self._on_end(task, JobEnd("COMPLETED"))
        rest = [job for job in watched if job not in ended]
        if not rest or not query:
            return ended, False
        try:
            self.queries += 1
            states = self.queue.states(rest)
        except Exception:  # the controller is down or slow: ask again next time
            return ended, False
        finished = len(ended)
        for job in rest:
            task = watched[job]
            state = states.get(job)
            if state is not None and state.never_runs:
                self.queue.cancel([job])
                ended.append(job)
                self._on_end(task, JobEnd("CANCELLED", "an upstream job failed (DependencyNeverSatisfied)"))
            elif state is not None and state.final and state.state != "COMPLETED":
                ended.append(job)
                reason = state.reason if state.reason not in ("", "None") else ""
                self._on_end(task, JobEnd(state.state, reason))
            elif state is None or state.final:  # COMPLETED (or forgotten) without output yet: allow some grace
                self._misses[job] = self._misses.get(job, 0) + 1
                if self._misses[job] > OUTPUT_GRACE_POLLS:
                    ended.append(job)
                    what = state.state if state is not None else "UNKNOWN"
                    detail = "" if state is not None else "SLURM no longer knows the job"
                    self._on_end(task, JobEnd(what, detail))
        return ended, len(ended) > finished

"""One fresh worker process per task (``block_allocation=False``, the upstream default).

A starter thread starts processes as cores free up (it waits on a condition, never polls). The hub's callbacks
send each task when its worker says hello, complete the Future on the reply and reap the process on exit; they run
on the hub's IO thread or on a caller waiting in ``result()`` (never two at once: see xl_comm.hub).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from xl_comm import Failure, Hello, Hub, Kind, Result

from executorlib.accounting import fits
from executorlib.dependencies import cancel_and_notify
from executorlib.errors import ExecutorlibSocketError
from executorlib.gpus import gpus_needed
from executorlib.launchers.protocol import Launcher, WorkerSpawner
from executorlib.schedulers.workers import (
    EXIT_GRACE_SECONDS,
    ExitHook,
    TaskItem,
    WorkerScheduler,
    death_error,
    overtime_error,
    settle,
    start_worker,
)
from executorlib.status import SchedulerState

log = logging.getLogger("executorlib")


@dataclass(eq=False)
class _Run:
    item: TaskItem
    worker_index: int
    gpus: tuple[str, ...] = ()
    spawner: WorkerSpawner | None = None
    replied: bool = False
    released: bool = False
    #: killed for exceeding run_time_max; its Future already holds the TimeoutError
    timed_out: bool = False


class PerCallScheduler(WorkerScheduler):
    """A fresh worker per call, started through ``launcher`` while the calls in flight fit ``core_budget`` CPUs
    and ``max_tasks`` calls (None: no bound). The hub binds to loopback when ``localhost``."""

    def __init__(
        self,
        *,
        core_budget: int | None,
        max_tasks: int | None,
        localhost: bool,
        launcher: Launcher,
        log_obj_size: bool = False,
    ) -> None:
        self._budget = core_budget
        self._max_tasks = max_tasks
        self._launcher = launcher
        self._log_obj_size = log_obj_size
        # kill a task's process once its run_time_max passes, unless the resource manager does (srun --time)
        self._enforce_run_time_max = not launcher.enforces_run_time_max
        gpus = launcher.gpus
        self._track_gpus = gpus is not None  # None: the resource manager assigns devices, nothing to count here
        self._free_gpus = list(gpus or ())  # devices not held by a running task
        self._hub = Hub(self, localhost=localhost, same_host=launcher.same_host)
        self.hub_ref = self._hub.ref
        self._cond = threading.Condition()
        self._pending: deque[TaskItem] = deque()
        self._runs: dict[int, _Run] = {}
        self._used = 0
        self._active = 0  # tasks holding cores: started and not yet answered (or dead)
        self._free_indices: list[int] = []  # executorlib_worker_id values given back, lowest first
        self._next_index = 0
        self._worker_ids = itertools.count(1)
        self._shutdown = False
        self._done = threading.Event()
        self._starter = threading.Thread(target=self._start_loop, name="executorlib-starter", daemon=True)
        self._starter.start()
        ExitHook.add(self)

    # -- caller side ------------------------------------------------------------------------------------------

    def _enqueue(self, item: TaskItem) -> None:
        with self._cond:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._pending.append(item)
            self._cond.notify()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._shutdown = True
            cancelled = list(self._pending) if cancel_futures else []
            if cancel_futures:
                self._pending.clear()
            self._cond.notify()
        for item in cancelled:
            cancel_and_notify(item.future)
        if wait and threading.current_thread() is not self._starter and not self._hub.in_io_thread():
            self._done.wait()

    @property
    def queued(self) -> int:
        return len(self._pending)

    def pending(self) -> list[Future[Any]]:
        with self._cond:
            return [item.future for item in self._pending]

    def info(self) -> dict[str, Any]:
        return {"block_allocation": False, "max_cores": self._budget, "max_workers": self._max_tasks}

    def state(self) -> SchedulerState:
        with self._cond:
            alive = len(self._runs)
            queued = sum(1 for item in self._pending if not item.future.cancelled())  # dropped only when started
        return SchedulerState("a worker per call", type(self._launcher).__name__, alive, "workers", queued)

    # -- starter thread --------------------------------------------------------------------------------------

    def _start_loop(self) -> None:
        while self._start_next():
            pass
        self._hub.close()
        self._done.set()

    def _start_next(self) -> bool:
        """Start the next task's worker once it fits; False when shut down and everything has finished."""
        with self._cond:
            while not self._can_start():
                if self._shutdown and not self._pending and not self._runs:
                    return False
                self._cond.wait()
            item = self._pending.popleft()
            if not item.start():
                return True
            worker_id = next(self._worker_ids)
            index = heapq.heappop(self._free_indices) if self._free_indices else self._new_index()
            gpus = self._take_gpus(gpus_needed(item.resources) if self._track_gpus else 0)
            run = self._runs[worker_id] = _Run(item, index, gpus)
            self._used += item.resources.cpus
            self._active += 1
        try:
            run.spawner = start_worker(
                self._hub, worker_id, index, item.resources, one_shot=True, launcher=self._launcher, gpus=gpus
            )
            self._hub.expect(worker_id, run.spawner.sentinel)
            log.debug("worker %d started for %s: %s", worker_id, item.label, run.spawner.describe())
        except Exception as problem:
            error = ExecutorlibSocketError(f"could not start a worker for {item.label}: {problem}")
            error.__cause__ = problem
            self._release(run)
            with self._cond:
                del self._runs[worker_id]
                self._cond.notify()
            item.future.set_exception(error)
        return True

    def _new_index(self) -> int:
        self._next_index += 1
        return self._next_index - 1

    def _take_gpus(self, count: int) -> tuple[str, ...]:
        taken, self._free_gpus = self._free_gpus[:count], self._free_gpus[count:]
        return tuple(taken)

    def _can_start(self) -> bool:
        if not self._pending:
            return False
        head = self._pending[0].resources
        # submit() checked that enough exist: wait for some to free up
        if self._track_gpus and gpus_needed(head) > len(self._free_gpus):
            return False
        return fits(self._used, self._active, head.cpus, self._budget, self._max_tasks)

    def _release(self, run: _Run) -> None:
        """Give back a task's cores and worker id: on its reply (the process is only exiting now, so the next
        worker may start meanwhile) or on its death."""
        with self._cond:
            if run.released:
                return
            run.released = True
            self._used -= run.item.resources.cpus
            self._active -= 1
            self._free_gpus.extend(run.gpus)
            heapq.heappush(self._free_indices, run.worker_index)
            self._cond.notify()

    # -- hub callbacks (IO thread, or a waiting caller) ---------------------------------------------------------------

    def on_hello(self, worker_id: int, hello: Hello) -> None:
        run = self._runs.get(worker_id)
        if run is not None:
            self._hub.send_packed(worker_id, Kind.TASK, run.item.body, task_id=run.item.task_id)
            limit = run.item.resources.run_time_max
            if limit is not None and self._enforce_run_time_max:  # the clock starts now, when the task is sent
                self._hub.call_later(limit, lambda: self._overtime(worker_id))

    def _overtime(self, worker_id: int) -> None:
        """``run_time_max`` passed: fail the Future and kill the process group (the exit reaps it and frees its
        cores). A task that answered in time is gone from ``_runs`` or marked replied: nothing happens then."""
        run = self._runs.get(worker_id)
        if run is None or run.replied or run.timed_out:
            return
        run.timed_out = True
        run.item.future.set_exception(overtime_error(run.item))
        if run.spawner is not None:
            run.spawner.shutdown(wait=False)

    def on_reply(self, worker_id: int, task_id: int, reply: Result | Failure) -> None:
        run = self._runs.get(worker_id)
        if run is not None and run.timed_out:
            return  # it answered after its time was up: the TimeoutError stands
        if run is None or run.replied or task_id != run.item.task_id:
            log.warning("dropped an answer from worker %d to task %d, which it was not running", worker_id, task_id)
            return
        run.replied = True
        self._release(run)
        settle(run.item.future, reply)

    def on_exit(self, worker_id: int) -> None:
        run = self._runs.get(worker_id)
        if run is None:
            return
        if run.replied or run.timed_out:
            self._reap(worker_id)
        else:  # the reply may still be in flight behind the exit
            self._hub.call_later(EXIT_GRACE_SECONDS, lambda: self._reap(worker_id))

    def _reap(self, worker_id: int) -> None:
        with self._cond:
            run = self._runs.pop(worker_id)
            self._cond.notify()  # shutdown waits for the last process to be reaped
        self._release(run)
        self._hub.forget(worker_id)
        if run.spawner is not None:
            run.spawner.shutdown(wait=True)  # already exited: reaps it and anything left in its process group
        if not run.replied and not run.timed_out and run.spawner is not None:
            run.item.future.set_exception(
                death_error(worker_id, run.worker_index, run.spawner, f"running {run.item.label}")
            )

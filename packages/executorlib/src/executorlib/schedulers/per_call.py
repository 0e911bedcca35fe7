"""One fresh worker process per task (``block_allocation=False``, the upstream default).

A starter thread starts processes as cores free up (it waits on a condition, never polls). The hub's callbacks
send each task when its worker says hello, complete the Future on the reply and reap the process on exit; they run
on the hub's IO thread or on a caller waiting in ``result()`` (never two at once: see xl_comm.hub).

Prestarting: where the launcher allows it (a local one-core worker holds nothing anyone else needs), the starter
keeps one *spare* worker started ahead, shaped like the last task (same cores, threads, cwd), so the next call of
that shape skips the interpreter start. A spare is a fresh process that never ran user code; it holds no cores and
no place under ``max_workers`` until a task claims it, a task of another shape gets its own worker while the spare
is stopped, and shutdown stops it. A spare that dies idle is replaced; a task whose claimed spare died before the
task reached it is started again on a new worker, once.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import select
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from xl_comm import Failure, Hello, Hub, Kind, Result
from xl_spawn import pid_is_zombie

from executorlib.accounting import fits
from executorlib.dependencies import cancel_and_notify
from executorlib.errors import ExecutorlibSocketError
from executorlib.gpus import gpus_needed
from executorlib.launchers.protocol import Launcher, WorkerSpawner
from executorlib.resources import Resources
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
    #: the worker said hello / the task was sent to it (guarded by the scheduler's lock: claim and hello race)
    greeted: bool = False
    sent: bool = False
    #: the worker was a spare, claimed by this task
    claimed: bool = False


@dataclass(eq=False)
class _Spare:
    """A worker started before a task needs it, for tasks of ``shape`` (see :func:`worker_shape`)."""

    worker_id: int
    worker_index: int
    shape: Resources
    spawner: WorkerSpawner | None = None
    #: the hub watches it: from now on only its exit callback closes its sentinel
    expected: bool = False
    greeted: bool = False
    stopping: bool = False


def worker_shape(resources: Resources) -> Resources:
    """What a worker's process depends on: ``resources`` without what only the task or the scheduler reads (the
    error log file travels with the task; the time limit, cache and priority are the scheduler's)."""
    return dataclasses.replace(
        resources, cache_key=None, cache_directory=None, error_log_file=None, run_time_max=None, priority=None
    )


def _has_exited(spawner: WorkerSpawner) -> bool:
    """The process has exited (its sentinel is readable, or its main thread is a zombie), without reaping it; True
    once its sentinel is closed. The zombie check sees a SIGKILLed process before its pidfd does (that waits for
    every thread to end), so a spare killed just before a task claims it is not sent the task."""
    try:
        poller = select.poll()
        poller.register(spawner.sentinel, select.POLLIN)
        if poller.poll(0):
            return True
    except (RuntimeError, OSError, ValueError):
        return True
    return pid_is_zombie(spawner.pid)


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
        #: workers started ahead, by worker id, until reaped (at most one not stopping: ``_spare``)
        self._spares: dict[int, _Spare] = {}
        self._spare: _Spare | None = None
        #: the shape to start a spare for, once the starter is free (None: none wanted)
        self._spare_wanted: Resources | None = None
        #: tasks already started again after their claimed spare died: they take no spare again
        self._restarted: set[int] = set()
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
            self._spare_wanted = None
            cancelled = list(self._pending) if cancel_futures else []
            if cancel_futures:
                self._pending.clear()
            spares = self._stop_spares()
            self._cond.notify()
        for item in cancelled:
            cancel_and_notify(item.future)
        for spawner in spares:
            spawner.shutdown(wait=False)  # its exit is reaped by on_exit; the starter waits for that
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
        self._launcher.close()
        self._hub.close()
        self._done.set()

    def _start_next(self) -> bool:
        """Start the next task's worker once it fits, or a spare when one is wanted; False when shut down and
        everything has finished."""
        with self._cond:
            while not self._can_start():
                if self._shutdown and not self._pending and not self._runs and not self._spares:
                    return False
                if self._spare_wanted is not None:
                    shape, self._spare_wanted = self._spare_wanted, None
                    break
                self._cond.wait()
            else:
                shape = None
            if shape is None:
                item = self._pending.popleft()
                if not item.start():
                    return True
                spare, stale = self._claim_spare(item)
                if spare is not None:
                    worker_id, index = spare.worker_id, spare.worker_index
                else:
                    worker_id = next(self._worker_ids)
                    index = heapq.heappop(self._free_indices) if self._free_indices else self._new_index()
                gpus = self._take_gpus(gpus_needed(item.resources) if self._track_gpus else 0)
                run = self._runs[worker_id] = _Run(item, index, gpus)
                self._used += item.resources.cpus
                self._active += 1
                if spare is not None:
                    run.spawner, run.claimed, run.greeted, run.sent = spare.spawner, True, spare.greeted, spare.greeted
        if shape is not None:
            self._start_spare(shape)
            return True
        if stale is not None and stale.spawner is not None:  # expected: see _claim_spare
            stale.spawner.shutdown(wait=False)  # not sized for this task; reaped by on_exit
        if spare is not None:
            if run.sent:
                self._send_task(worker_id, run)
            log.debug("worker %d (started ahead) runs %s", worker_id, item.label)
        else:
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
        self._start_spare(worker_shape(item.resources))
        return True

    def _prestarts(self, shape: Resources) -> bool:
        """A spare may be started for tasks of ``shape``: the launcher allows it and no GPU is handed out."""
        if self._track_gpus and gpus_needed(shape) > 0:
            return False  # devices are assigned per task, at the start of its process
        return self._launcher.prestarts(shape)

    def _claim_spare(self, item: TaskItem) -> tuple[_Spare | None, _Spare | None]:
        """Under the lock: (the spare that now runs ``item``, or None; a spare of another shape to stop, or
        None). A spare that has exited is left for on_exit to reap."""
        spare = self._spare
        if item.task_id in self._restarted:
            self._restarted.discard(item.task_id)
            return None, None
        if spare is None or not spare.expected:
            return None, None
        self._spare = None
        if spare.shape != worker_shape(item.resources):
            spare.stopping = True
            return None, spare
        if spare.spawner is None or _has_exited(spare.spawner):
            return None, None
        del self._spares[spare.worker_id]
        return spare, None

    def _start_spare(self, shape: Resources) -> None:
        """Start a spare for ``shape`` unless one is there, shutdown began or the launcher does not allow it."""
        with self._cond:
            if self._shutdown or self._spare is not None or not self._prestarts(shape):
                return
            index = heapq.heappop(self._free_indices) if self._free_indices else self._new_index()
            worker_id = next(self._worker_ids)
            spare = self._spare = self._spares[worker_id] = _Spare(worker_id, index, shape)
        try:
            spawner = start_worker(self._hub, spare.worker_id, index, shape, one_shot=True, launcher=self._launcher)
        except Exception as problem:
            log.debug("could not start a worker ahead for tasks like %s: %s", shape, problem)
            self._drop_unstarted_spare(spare)
            return
        with self._cond:
            spare.spawner = spawner
        try:
            self._hub.expect(spare.worker_id, spawner.sentinel)
        except Exception as problem:  # the starter thread must live on: drop the spare
            log.debug("could not watch worker %d, started ahead: %s", spare.worker_id, problem)
            spawner.shutdown(wait=True)
            self._drop_unstarted_spare(spare)
            return
        with self._cond:
            spare.expected = True
            stop = spare.stopping  # shutdown() came before the hub watched it, and left it to us
        if stop:
            spawner.shutdown(wait=False)
        log.debug("worker %d started ahead: %s", spare.worker_id, spawner.describe())

    def _stop_spares(self) -> list[WorkerSpawner]:
        """Under the lock: mark every spare stopping and return the spawners to stop."""
        self._spare = None
        spawners = []
        for spare in self._spares.values():
            spare.stopping = True
            if spare.expected and spare.spawner is not None:
                spawners.append(spare.spawner)
        return spawners

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
        with self._cond:
            run = self._runs.get(worker_id)
            if run is None:
                spare = self._spares.get(worker_id)
                if spare is not None:
                    spare.greeted = True
                return
            run.greeted = True
            if run.sent:
                return
            run.sent = True
        self._send_task(worker_id, run)

    def _send_task(self, worker_id: int, run: _Run) -> None:
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
        with self._cond:
            spare = self._spares.pop(worker_id, None)
            run = self._runs.get(worker_id) if spare is None else None
            if spare is not None:
                self._spare_exited(spare)
        if spare is not None:
            self._hub.forget(worker_id)
            if spare.spawner is not None:
                spare.spawner.shutdown(wait=True)  # already exited: reaps it and anything left in its process group
            return
        if run is None:
            return
        if run.replied or run.timed_out:
            self._reap(worker_id)
        else:  # the reply may still be in flight behind the exit
            self._hub.call_later(EXIT_GRACE_SECONDS, lambda: self._reap(worker_id))

    def _drop_unstarted_spare(self, spare: _Spare) -> None:
        """A spare that could not be started or watched: forget it and free its worker index."""
        with self._cond:
            del self._spares[spare.worker_id]
            if self._spare is spare:
                self._spare = None
            heapq.heappush(self._free_indices, spare.worker_index)
            self._cond.notify()

    def _spare_exited(self, spare: _Spare) -> None:
        """Under the lock: a spare exited, stopped or dead while idle. One that had said hello is replaced (one
        that died before its hello is not: the next task's start tries again, so a broken environment cannot
        loop)."""
        if self._spare is spare:
            self._spare = None
            if spare.greeted and not spare.stopping and not self._shutdown:
                self._spare_wanted = spare.shape
        if not spare.stopping:
            log.debug("worker %d, started ahead, died idle", spare.worker_id)
        heapq.heappush(self._free_indices, spare.worker_index)
        self._cond.notify()

    def _reap(self, worker_id: int) -> None:
        with self._cond:
            run = self._runs.pop(worker_id)
            # A claimed spare that died before the task reached it: the task runs on a new worker, once.
            again = run.claimed and not run.sent
            if again:
                self._restarted.add(run.item.task_id)
                self._pending.appendleft(run.item)
            self._cond.notify()  # shutdown waits for the last process to be reaped
        self._release(run)
        self._hub.forget(worker_id)
        if run.spawner is not None:
            run.spawner.shutdown(wait=True)  # already exited: reaps it and anything left in its process group
        if not again and not run.replied and not run.timed_out and run.spawner is not None:
            run.item.future.set_exception(
                death_error(worker_id, run.worker_index, run.spawner, f"running {run.item.label}")
            )

"""A pool of long-lived workers (``block_allocation=True``).

No thread of its own: ``submit`` hands a task straight to an idle worker, and the hub's reply callback (on the IO
thread, or on a caller waiting in ``result()``) hands the next queued task to a worker the moment its reply
arrives. A worker that dies fails exactly its task (or retries it on a restarted worker while ``restart_limit``
allows); when no worker is left, every waiting task fails. ``resize`` (the executor's ``max_workers`` setter) adds
workers at once, or retires surplus ones as they become free; a retiring worker is never replaced.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from xl_comm import Failure, Hello, Hub, Init, Kind, Result, Shutdown

from executorlib.dependencies import cancel_and_notify
from executorlib.errors import ExecutorlibSocketError
from executorlib.gpus import block_gpus, gpus_needed
from executorlib.launchers.protocol import Launcher, WorkerSpawner
from executorlib.resources import Resources
from executorlib.schedulers.workers import (
    EXIT_GRACE_SECONDS,
    ExitHook,
    TaskItem,
    WorkerScheduler,
    death_error,
    overtime_error,
    process_name,
    settle,
    start_worker,
)
from executorlib.status import SchedulerState

log = logging.getLogger("executorlib")

#: How long a worker told to stop may take before its process group is killed.
STOP_TIMEOUT_SECONDS = 10.0

#: A worker whose last task took less than this is "quick": it gets several queued tasks at once, in one
#: message, and answers them in one, so tiny tasks do not each pay a round trip and the per-message costs.
#: Slower tasks go one at a time: a task sent to a worker cannot move to another one that becomes free first.
PREFETCH_BELOW_SECONDS = 0.005

#: At most this many tasks wait on one quick worker: enough to amortise a message, few enough that the tasks
#: stuck behind one that turns out slow are few.
MAX_QUEUED_PER_WORKER = 16


@dataclass(eq=False)
class _Worker:
    worker_index: int
    spawner: WorkerSpawner
    ready: bool = False
    exited: bool = False
    #: tasks sent and not answered, in the order the worker runs them: the first is the running one
    inflight: deque[TaskItem] = field(default_factory=deque)
    last_reply: float = 0.0
    quick: bool = False
    #: it said its last answer is its last: replace it without counting a crash against restart_limit
    ending: bool = False
    #: tasks have a time limit, whose clock starts when a task is sent: so one task at a time, no prefetch
    timed: bool = False
    #: being killed (its task ran out of time): it takes no more tasks
    doomed: bool = False
    #: leaving the pool (it shrank): it takes no more tasks, is told to stop once idle, and is not replaced
    retiring: bool = False
    #: it was told to stop (Shutdown sent, or its process signalled while it was still booting)
    told: bool = False
    #: to be told to stop as soon as it says hello (an MPI worker still booting: see _tell_to_stop)
    stop_on_hello: bool = False

    def room(self) -> int:
        """How many tasks to send now: one to an idle worker; a quick worker is topped up when it is down to
        its last task (not after every reply, which would send many small batches)."""
        if not self.ready or self.exited or self.ending or self.doomed or self.retiring:
            return 0
        if self.quick and not self.timed and len(self.inflight) <= 1:
            return MAX_QUEUED_PER_WORKER - len(self.inflight)
        return 0 if self.inflight else 1


def _take(inflight: deque[TaskItem], task_id: int) -> TaskItem | None:
    """Remove and return the task ``task_id`` from anywhere in ``inflight``."""
    for index, item in enumerate(inflight):
        if item.task_id == task_id:
            del inflight[index]
            return item
    return None


class PoolScheduler(WorkerScheduler):
    """``workers`` long-lived workers with ``resources``, started through ``launcher``; ``init_function``'s dict
    presets keyword arguments; a worker that dies is replaced ``restart_limit`` times per position in the pool."""

    def __init__(
        self,
        *,
        workers: int,
        resources: Resources,
        init_function: Callable[[], Mapping[str, Any]] | None,
        restart_limit: int,
        localhost: bool,
        launcher: Launcher,
        log_obj_size: bool = False,
    ) -> None:
        self._resources = resources
        # A launcher that does not end a worker at run_time_max (local processes) leaves it to this scheduler: each
        # task is timed and its worker killed; for srun or flux the limit applies to the worker's step or job.
        self._time_limit = None if launcher.enforces_run_time_max else resources.run_time_max
        self._launcher = launcher
        self._log_obj_size = log_obj_size
        # None: the resource manager assigns devices to each worker, none are handed out here
        self._visible_gpus = launcher.gpus
        self._gpus: dict[int, tuple[str, ...]] = {}
        self._assign_gpus(range(workers))
        self._init = Init(init_function) if init_function is not None else None
        self._lock = threading.Lock()
        self._pending: deque[TaskItem] = deque()
        self._workers: dict[int, _Worker] = {}
        self._restarts_left = dict.fromkeys(range(workers), restart_limit)
        #: the pool's positions (each a worker index, its executorlib_worker_id); a resize adds or drops some
        self._positions = set(range(workers))
        #: surplus workers still to be picked (each the next to answer) and surplus workers not yet exited
        self._to_retire = 0
        self._leaving = 0
        self._resized = threading.Condition(self._lock)
        self._resize_lock = threading.Lock()
        self._restart_limit = restart_limit
        self._warned_restart = False  # the first restart is a warning the user sees; later ones only logged
        self._worker_ids = itertools.count(1)
        self._shutdown = False
        self._stopping = False
        self._broken: ExecutorlibSocketError | None = None
        self._done = threading.Event()
        self._size = workers
        self._hub = Hub(self, localhost=localhost, same_host=launcher.same_host)
        self.hub_ref = self._hub.ref
        try:
            for index in range(workers):
                self._start(index)
        except BaseException:
            self._kill_all()
            self._hub.close()
            raise
        ExitHook.add(self)

    # -- caller side ------------------------------------------------------------------------------------------

    def _enqueue(self, item: TaskItem) -> None:
        taker = None
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            broken = self._broken
            if broken is None:
                if not self._pending:  # the common case first: an idle worker takes it straight away
                    for worker_id, worker in self._workers.items():
                        if not worker.inflight and worker.room():
                            taker = worker_id
                            break
                if taker is None:
                    self._pending.append(item)
                    if not any(worker.room() for worker in self._workers.values()):
                        # No worker can take a task now (a burst fills their queues): whatever gives one room
                        # again (on_reply, on_hello, on_exit, a resize) dispatches under this lock after it, and
                        # sees this item. Skipping _dispatch here halves the cost of such a submit.
                        return
                elif item.start():
                    self._workers[taker].inflight.append(item)
                    # Sent under the lock: a worker answers in the order it receives, which must be the order of
                    # its inflight queue (see _dispatch).
                    self._hub.send_packed(taker, Kind.TASK, item.body, task_id=item.task_id)
                    self._start_clock(taker, item)
                    return
                else:
                    return  # cancelled before it started
        if broken is not None:
            item.future.set_exception(broken)
        else:
            self._dispatch()  # in this thread: the hub lets any thread send, which saves a wake-up per task

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            cancelled: list[TaskItem] = []
            if cancel_futures:
                # A task queued again after its worker died has started (its Future cannot be cancelled): it stays
                # queued and is retried, or it would never complete.
                cancelled = [item for item in self._pending if not item.started]
                self._pending = deque(item for item in self._pending if item.started)
        for item in cancelled:
            cancel_and_notify(item.future)
        if not self._hub.closed:
            self._hub.call_soon(self._dispatch)
        if wait and not self._hub.in_io_thread():
            self._done.wait()

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def workers(self) -> int:
        """The pool's size: how many workers it keeps."""
        return self._size

    def resize(self, workers: int) -> None:
        """Keep ``workers`` workers from now on (executorlib 1.x's ``max_workers`` setter).

        Growing starts the new workers (the lowest free worker indices, the pool's resources, init_function and
        restart_limit) and returns without waiting for them to boot. Shrinking retires the surplus: workers still
        booting first, then idle ones, then each next worker to answer; a retiring worker gets no new task, finishes
        what it was sent, is told to stop and is not replaced. It returns once they have exited (at once when
        called on the hub's own thread, which must go on to see them exit). Queued tasks go to the other workers."""
        with self._resize_lock:  # one resize at a time
            with self._lock:
                if self._shutdown:
                    raise RuntimeError("cannot resize the pool of an executor that is shut down")
                current = self._size
            if workers > current:
                self._grow(workers - current)
            elif workers < current:
                with self._lock:
                    self._size = workers
                    self._leaving += current - workers
                self._hub.call_soon(lambda: self._retire_surplus(current - workers))
                if not self._hub.in_io_thread():
                    with self._resized:
                        self._resized.wait_for(lambda: self._leaving <= 0 or self._stopping or self._broken is not None)

    def _assign_gpus(self, indices: Iterable[int]) -> None:
        """Each worker index has its own devices (as at start-up); ValueError naming the shortfall, before anything
        changes, when there are too few."""
        indices = list(indices)
        if self._visible_gpus is None or not indices:
            self._gpus.update(dict.fromkeys(indices, ()))
            return
        per_worker = block_gpus(max(indices) + 1, gpus_needed(self._resources), self._visible_gpus)
        self._gpus.update({index: per_worker[index] for index in indices})

    def _grow(self, count: int) -> None:
        with self._lock:
            free = [index for index in range(len(self._positions) + count) if index not in self._positions][:count]
        self._assign_gpus(free)
        with self._lock:
            self._positions.update(free)
            self._restarts_left.update(dict.fromkeys(free, self._restart_limit))
            self._size += count
        for index in free:
            try:
                self._start(index)
            except BaseException:
                with self._lock:
                    self._positions.discard(index)
                    self._size -= 1
                raise

    def _retire_surplus(self, count: int) -> None:
        """Hub thread: pick ``count`` workers to leave: positions whose worker is gone for good first (restarts used
        up), then workers still booting, then idle ones; the rest are the next workers to answer (on_reply)."""
        told: list[tuple[int, _Worker]] = []
        with self._lock:
            staffed = {worker.worker_index for worker in self._workers.values()}
            for index in sorted(self._positions - staffed, reverse=True)[:count]:
                self._positions.discard(index)
                self._leaving -= 1
                count -= 1
            idle = [(wid, w) for wid, w in self._workers.items() if not w.retiring and (not w.ready or not w.inflight)]
            idle.sort(key=lambda taker: taker[1].ready)  # booting ones first
            for worker_id, worker in idle[:count]:
                self._mark_retiring(worker)
                told.append((worker_id, worker))
            self._to_retire += count - len(told)
            self._resized.notify_all()
        for worker_id, worker in told:
            self._tell_to_stop(worker_id, worker)
        self._dispatch()

    def _mark_retiring(self, worker: _Worker) -> None:
        """(under the lock) ``worker`` leaves the pool: its position is dropped, nothing more is sent to it."""
        worker.retiring = True
        self._positions.discard(worker.worker_index)

    def _tell_to_stop(self, worker_id: int, worker: _Worker) -> None:
        if worker.told:
            return
        worker.told = True
        if worker.ready:
            self._hub.send(worker_id, Shutdown())
        elif self._resources.cores > 1 and self._launcher.same_host:
            # Local MPI ranks still booting: a signal now makes mpiexec print its "BAD TERMINATION" banner, so it is
            # told to stop once it says hello, and killed only if it has not ended in time.
            worker.stop_on_hello = True
            self._hub.call_later(STOP_TIMEOUT_SECONDS, lambda: self._kill_if_alive(worker))
        else:  # still booting (a step or batch job may still be queued and never start): it has nothing to finish
            worker.spawner.shutdown(wait=False)

    def _kill_if_alive(self, worker: _Worker) -> None:
        if not worker.exited:
            worker.spawner.shutdown(wait=False)

    def pending(self) -> list[Future[Any]]:
        with self._lock:
            return [item.future for item in self._pending]

    def info(self) -> dict[str, Any]:
        return {
            "block_allocation": True,
            "max_workers": self._size,
            "cores": self._resources.cores,
            "threads_per_core": self._resources.threads_per_core,
            "cwd": self._resources.cwd,
            "restart_limit": self._restart_limit,
        }

    def state(self) -> SchedulerState:
        with self._lock:
            alive = sum(1 for worker in self._workers.values() if not worker.exited)
            queued = sum(1 for item in self._pending if not item.future.cancelled())  # dropped only at dispatch
        mode = f"a pool of {self._size} worker{'s' if self._size != 1 else ''}"
        return SchedulerState(mode, type(self._launcher).__name__, alive, "workers", queued)

    # -- hub callbacks (IO thread, or a waiting caller) ---------------------------------------------------------------

    def _start(self, index: int) -> None:
        """Start the worker at position ``index`` of the pool (its executorlib_worker_id)."""
        worker_id = next(self._worker_ids)
        spawner = start_worker(
            self._hub,
            worker_id,
            index,
            self._resources,
            one_shot=False,
            launcher=self._launcher,
            gpus=self._gpus[index],
        )
        with self._lock:  # submit() walks the workers from the caller's thread
            self._workers[worker_id] = _Worker(index, spawner, timed=self._time_limit is not None)
        log.debug("started worker %d (executorlib_worker_id %d): %s", worker_id, index, spawner.describe())
        # a resize may add workers from the caller's thread
        self._hub.expect(worker_id, spawner.sentinel)

    def _dispatch(self) -> None:
        """Give queued tasks to workers, idle ones first and a fair share each; once shut down and drained,
        stop the workers."""
        with self._lock:
            takers = sorted(
                ((wid, w) for wid, w in self._workers.items() if w.room()), key=lambda taker: len(taker[1].inflight)
            )
            share = -(-len(self._pending) // len(takers)) if takers else 0
            for worker_id, worker in takers:
                items: list[TaskItem] = []
                while len(items) < min(share, worker.room()) and self._pending:
                    item = self._next_item()
                    if item is not None:
                        items.append(item)
                if items:
                    worker.inflight.extend(items)
                    # Sent under the lock, so that two threads dispatching to one worker cannot swap their
                    # messages: the worker answers in the order it receives, and on_reply matches answers to
                    # the inflight queue in order (an answer out of that order would be dropped, and its
                    # Future never completed).
                    if len(items) == 1:
                        self._hub.send_packed(worker_id, Kind.TASK, items[0].body, task_id=items[0].task_id)
                        self._start_clock(worker_id, items[0])
                    else:
                        self._hub.send_batch(worker_id, [(item.task_id, item.body) for item in items])
            drained = self._shutdown and not self._pending and not any(w.inflight for w in self._workers.values())
        if drained:
            self._stop_workers()

    def _start_clock(self, worker_id: int, item: TaskItem) -> None:
        """With a time limit a worker gets one task at a time, so the task just sent starts now."""
        if self._time_limit is not None:
            task_id = item.task_id  # not the item: a timer holds nothing of a task that finished long ago
            self._hub.call_later(self._time_limit, lambda: self._overtime(worker_id, task_id))

    def _overtime(self, worker_id: int, task_id: int) -> None:
        """A task's ``run_time_max`` passed: if it still runs, fail it and kill its worker (replaced per
        restart_limit when its exit is seen). A task that answered in time is no longer inflight: nothing
        happens, so a worker that moved on to another task is left alone."""
        worker = self._workers.get(worker_id)
        with self._lock:
            running = worker.inflight[0] if worker is not None and worker.inflight else None
            if worker is None or running is None or running.task_id != task_id or running.future.done():
                return
            worker.doomed = True
        running.future.set_exception(overtime_error(running))
        worker.spawner.shutdown(wait=False)

    def _next_item(self) -> TaskItem | None:
        while self._pending:
            item = self._pending.popleft()
            if item.start():  # False: cancelled while queued, dropped here
                return item
        return None

    def on_hello(self, worker_id: int, hello: Hello) -> None:
        worker = self._workers.get(worker_id)
        if worker is None:
            return
        if worker.stop_on_hello:  # told to stop while it booted (see _tell_to_stop)
            worker.ready = True
            self._hub.send(worker_id, Shutdown())
            return
        if self._init is not None:
            self._hub.send(worker_id, self._init)
        with self._lock:
            worker.ready = True
            worker.last_reply = time.monotonic()
            if self._to_retire > 0 and not worker.retiring:  # the pool shrank while it booted: it leaves at once
                self._to_retire -= 1
                self._mark_retiring(worker)
        log.debug("worker %d is ready (pid %d on %s)", worker_id, hello.pid, hello.host)
        if worker.retiring:
            self._tell_to_stop(worker_id, worker)
        self._dispatch()

    def on_reply(self, worker_id: int, task_id: int, reply: Result | Failure) -> None:
        worker = self._workers.get(worker_id)
        if worker is None:
            log.warning("dropped the answer to task %d: worker %d is gone", task_id, worker_id)
            return
        now = time.monotonic()
        with self._lock:
            if worker.inflight and worker.inflight[0].task_id == task_id:
                item = worker.inflight.popleft()
            else:
                found = _take(worker.inflight, task_id)
                if found is None:
                    log.warning(
                        "dropped an answer from worker %d to task %d, which it was not running", worker_id, task_id
                    )
                    return
                # A worker answers in the order it was sent its tasks, so this is a bug: settle the Future anyway
                # (a result is never dropped), and say so loudly.
                log.error("worker %d answered task %d before the tasks sent to it earlier", worker_id, task_id)
                item = found
            worker.ending = isinstance(reply, Failure) and reply.ends_worker
            worker.quick = now - worker.last_reply < PREFETCH_BELOW_SECONDS
            worker.last_reply = now
            if self._to_retire > 0 and not worker.retiring:  # the pool shrank: the first to answer leaves
                self._to_retire -= 1
                self._mark_retiring(worker)
            # Nothing queued: submit() hands the next task to this now idle worker itself.
            more = bool(self._pending) or self._shutdown
            leave = worker.retiring and not worker.inflight
        if not item.future.done():  # done: it ran out of time and its worker is being killed
            settle(item.future, reply)
        if leave:
            self._tell_to_stop(worker_id, worker)
        if more:
            self._dispatch()

    def on_exit(self, worker_id: int) -> None:
        worker = self._workers.get(worker_id)
        if worker is None:
            return
        worker.exited = True
        if worker.inflight:  # its reply may still be in flight behind the exit
            self._hub.call_later(EXIT_GRACE_SECONDS, lambda: self._gone(worker_id))
        else:
            self._gone(worker_id)

    def _gone(self, worker_id: int) -> None:
        with self._lock:
            worker = self._workers.pop(worker_id)
        self._hub.forget(worker_id)
        worker.spawner.shutdown(wait=True)  # reaps it and whatever it left in its process group
        with self._lock:
            lost = worker.inflight.popleft() if worker.inflight else None
            if lost is not None and lost.future.done():
                lost = None  # it ran out of time: it would again, so it is not retried
            # Tasks queued behind the one that was running never started: they go back to the queue, untouched.
            self._pending.extendleft(reversed(worker.inflight))
            worker.inflight.clear()
        if self._stopping:
            if not self._workers:
                self._finish()
            return
        with self._lock:
            if self._to_retire > 0 and not worker.retiring:  # the pool shrinks: a worker that died is the one to go
                self._to_retire -= 1
                self._mark_retiring(worker)
        if worker.retiring:
            self._retired(worker_id, worker, lost)
            return
        if worker.ending and lost is None:
            try:
                self._start(worker.worker_index)
            except Exception as problem:
                self._retire(worker_id, worker, None, problem)
        elif self._restarts_left[worker.worker_index] > 0:
            self._restarts_left[worker.worker_index] -= 1
            self._restarted(worker_id, worker)
            if lost is not None:
                with self._lock:
                    self._pending.appendleft(lost)  # retried on the restarted worker (upstream semantics)
            try:
                self._start(worker.worker_index)
            except Exception as problem:  # no restart after all: the lost task fails instead of waiting
                with self._lock:
                    if lost is not None and lost in self._pending:
                        self._pending.remove(lost)
                self._retire(worker_id, worker, lost, problem)
        else:
            self._retire(worker_id, worker, lost, None)
        self._dispatch()

    def _restarted(self, worker_id: int, worker: _Worker) -> None:
        """Log a restart; the first one of this pool is also a warning, since a task that crashed its worker and
        then succeeded on another would otherwise pass unnoticed."""
        message = (
            f"worker {worker_id} ({process_name(worker.spawner)}) "
            f"{'was killed: its task exceeded run_time_max' if worker.doomed else 'died'}; starting another in its "
            f"place ({self._restarts_left[worker.worker_index]} of restart_limit={self._restart_limit} restarts left)"
        )
        log.warning("%s", message)
        if not self._warned_restart:
            self._warned_restart = True
            warnings.warn(
                f"{message}. Further restarts of this executor are only logged (executorlib.log_to_stderr())",
                UserWarning,
                stacklevel=2,
            )

    def _retired(self, worker_id: int, worker: _Worker, lost: TaskItem | None) -> None:
        """A worker that left a shrinking pool has exited: not replaced, not a crash. Had it died while running a
        task, that task fails (there is no restart to retry it on); the tasks queued behind it went back to the
        queue in _gone."""
        if lost is not None and not lost.future.done():
            lost.future.set_exception(
                death_error(worker_id, worker.worker_index, worker.spawner, f"running {lost.label}")
            )
        with self._lock:
            self._leaving -= 1
            self._resized.notify_all()
        if not self._workers:  # the others died meanwhile: nothing is left to run the queue
            self._all_gone(worker_id, worker, None)
        self._dispatch()

    def _retire(self, worker_id: int, worker: _Worker, lost: TaskItem | None, problem: Exception | None) -> None:
        if lost is not None and not lost.future.done():
            lost.future.set_exception(
                death_error(worker_id, worker.worker_index, worker.spawner, f"running {lost.label}")
            )
        if not self._workers:
            self._all_gone(worker_id, worker, problem)

    def _all_gone(self, worker_id: int, worker: _Worker, problem: Exception | None) -> None:
        """No worker is left: every waiting task fails, and so does every later one."""
        error = ExecutorlibSocketError(
            f"all {self._size} workers of this executor died (restart_limit={self._restart_limit}); "
            f"the last was worker {worker_id} ({process_name(worker.spawner)}). Create a new executor, or raise "
            "restart_limit to restart workers that die"
        )
        if problem is not None:
            error.__cause__ = problem
        with self._lock:
            self._broken = error
            orphans = list(self._pending)
            self._pending.clear()
            self._resized.notify_all()  # a resize waiting for surplus workers to leave: none is left
        for item in orphans:
            if item.future.set_running_or_notify_cancel() if not item.started else True:
                item.future.set_exception(error)
        if self._shutdown:
            self._finish()

    def _stop_workers(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping the pool's %d workers", len(self._workers))
        if not self._workers:
            self._finish()
            return
        with self._lock:
            self._resized.notify_all()  # a resize waiting for surplus workers: shutdown stops them all
        for worker_id, worker in list(self._workers.items()):
            self._tell_to_stop(worker_id, worker)
        self._hub.call_later(STOP_TIMEOUT_SECONDS, self._kill_all)

    def _kill_all(self) -> None:
        for worker in list(self._workers.values()):
            worker.spawner.shutdown(wait=False)

    def _finish(self) -> None:
        self._hub.close()
        self._done.set()

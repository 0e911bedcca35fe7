"""A fake hub and a fake launcher for the scheduler state machines: no process, no socket, no IO thread.

The test thread plays the hub's IO thread: it decides when a hello, a reply or an exit reaches the scheduler
(``FakeHub.deliver``, ``report_exit``), when timers fire and when calls handed to the IO thread run. Fake worker
processes "exist" until a rule kills them. Everything the schedulers send is recorded, so the tests can check
that no task is sent twice and that capacity is never exceeded.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from executorlib.resources import Resources
from xl_comm import Failure, Hello, Init, Result, Shutdown
from xl_comm.messages import Kind


@dataclass(frozen=True)
class HelloMsg:
    """A hello on the wire from a worker to the hub."""


@dataclass(frozen=True)
class ReplyMsg:
    """A reply on the wire from a worker to the hub."""

    task_id: int
    reply: Result | Failure


@dataclass(eq=False)
class FakeProcess:
    worker_id: int
    cpus: int
    one_shot: bool
    alive: bool = True
    returncode: int | None = None
    said_hello: bool = False
    exit_reported: bool = False
    stop_requested: bool = False
    answered: int = 0
    #: tasks received and not answered yet, in the order the worker runs them
    received: deque[int] = field(default_factory=deque)
    #: messages on their way to the hub, in order
    wire: deque[HelloMsg | ReplyMsg] = field(default_factory=deque)


class World:
    """Every fake process, and what was sent to them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.processes: dict[int, FakeProcess] = {}
        self.hub: FakeHub | None = None
        #: task id -> how often a worker was sent it
        self.sends: Counter[int] = Counter()
        #: task id -> how many workers died holding it (received, unanswered)
        self.deaths_holding: Counter[int] = Counter()
        #: sends the real hub would drop (no hello from that worker yet, or forgotten, or closed)
        self.dropped: list[tuple[int, str]] = []
        #: bumped whenever another thread may have made progress (see SchedulerMachine.settle)
        self.changed = threading.Condition()
        self.generation = 0

    def bump(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def live(self) -> list[FakeProcess]:
        with self.lock:
            return [p for p in self.processes.values() if p.alive]

    def kill(self, process: FakeProcess, code: int) -> None:
        if not process.alive:
            return
        process.alive = False
        process.returncode = code
        # Held, as far as the scheduler can know: not answered, or answered with a reply still on the wire (the
        # scheduler waits a grace period for it, then retries the task).
        on_the_wire = [m.task_id for m in process.wire if isinstance(m, ReplyMsg)]
        for task_id in [*process.received, *on_the_wire]:
            self.deaths_holding[task_id] += 1
        process.received.clear()


class FakeSpawner:
    """Stands in for xl_spawn.SubprocessSpawner: the process exists until killed."""

    def __init__(self, world: World, *, cwd: str | None, env: dict[str, str], keep_stderr: int) -> None:
        self._world = world
        self._process: FakeProcess | None = None

    def bootup(self, argv: Sequence[str]) -> None:
        worker_id = int(argv[list(argv).index("--worker-id") + 1])
        cpus = int(argv[list(argv).index("--fake-cpus") + 1])
        process = FakeProcess(worker_id, cpus, one_shot="--one-shot" in argv)
        with self._world.lock:
            assert worker_id not in self._world.processes, f"worker id {worker_id} started twice"
            self._world.processes[worker_id] = process
        self._process = process
        self._world.bump()

    @property
    def process(self) -> FakeProcess:
        assert self._process is not None, "used before bootup"
        return self._process

    @property
    def pid(self) -> int:
        return 100_000 + self.process.worker_id

    @property
    def sentinel(self) -> int:
        return self.process.worker_id

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def poll(self) -> int | None:
        return self.process.returncode

    def wait(self, timeout: float | None = None) -> int:
        assert self.process.returncode is not None, "waited for a fake process that runs (it would block)"
        return self.process.returncode

    def shutdown(self, wait: bool = True) -> int | None:
        self._world.kill(self.process, -15)
        return self.process.returncode

    def describe(self) -> str:
        return f"fake worker {self.process.worker_id}"

    def stderr_tail(self, timeout: float = 2.0) -> str:
        return ""


class FakeLauncher:
    """The Launcher protocol, starting fake processes."""

    def __init__(self, world: World) -> None:
        self._world = world

    same_host = True
    keep_stderr = 0
    enforces_run_time_max = False
    gpus: tuple[str, ...] = ()

    def check_oversubscribe(self) -> None:
        pass

    def check(self, resources: Resources, *, where: str) -> None:
        pass  # any core count can "start": the fake needs no MPI

    def key_directory(self, resources: Resources) -> str | None:
        return None

    def close(self) -> None:
        pass

    def prestarts(self, resources: Resources) -> bool:
        return False  # a fake sentinel is no fd: prestarting is tested with real processes

    def argv(self, resources: Resources, worker_args: Sequence[str]) -> list[str]:
        return ["fake-worker", "--fake-cpus", str(resources.cpus), *worker_args]

    def spawner(self, resources: Resources, *, env: dict[str, str], keep_stderr: int) -> FakeSpawner:
        return FakeSpawner(self._world, cwd=resources.cwd, env=env, keep_stderr=keep_stderr)


class FakeHub:
    """The parts of xl_comm.Hub the schedulers use. The test thread is the IO thread while it delivers."""

    def __init__(self, handler: Any, world: World) -> None:
        self._handler = handler
        self._world = world
        world.hub = self
        self.ref = weakref.ref(self)
        self.closed = False
        self.expected: set[int] = set()
        self.ever_expected: set[int] = set()
        self.forgotten: set[int] = set()
        self.connected: set[int] = set()
        self.calls: deque[Callable[[], None]] = deque()
        #: (virtual deadline, sequence, fn)
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.now = 0.0
        self._timer_seq = 0
        self._io = False
        self._io_thread = threading.get_ident()
        self.inits = 0

    # -- what the schedulers call -------------------------------------------------------------------------------

    def worker_args(self, worker_id: int) -> list[str]:
        return ["--worker-id", str(worker_id)]

    def worker_env(self, key_directory: str | None = None) -> dict[str, str]:
        return {}

    def expect(self, worker_id: int, sentinel: int | None) -> None:
        with self._world.lock:
            self.expected.add(worker_id)
            self.ever_expected.add(worker_id)
        self._world.bump()

    def send(self, worker_id: int, message: Any, *, task_id: int = 0) -> None:
        process = self._reachable(worker_id, type(message).__name__)
        if process is None:
            return
        if isinstance(message, Shutdown):
            process.stop_requested = True
        elif isinstance(message, Init):
            self.inits += 1
        else:
            raise AssertionError(f"unexpected message {message!r}")

    def send_packed(self, worker_id: int, kind: Kind, body: Sequence[Any], *, task_id: int = 0) -> None:
        assert kind == Kind.TASK, kind
        self._tasks(worker_id, [task_id])

    def send_batch(self, worker_id: int, tasks: Sequence[tuple[int, Sequence[Any]]]) -> None:
        self._tasks(worker_id, [task_id for task_id, _ in tasks])

    def call_soon(self, fn: Callable[[], None]) -> None:
        if self.in_io_thread():
            fn()
        else:
            self.calls.append(fn)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self._timer_seq += 1
        self.timers.append((self.now + delay, self._timer_seq, fn))
        self.timers.sort(key=lambda timer: timer[:2])

    def forget(self, worker_id: int) -> None:
        self.call_soon(lambda: self._forget(worker_id))

    def close(self) -> None:
        self.closed = True  # the real IO thread stops: queued calls and timers never run
        self._world.bump()

    def in_io_thread(self) -> bool:
        return self._io and threading.get_ident() == self._io_thread

    def assist(self, future: Any, timeout: float | None) -> float | None:
        return timeout

    # -- what the test (as the IO thread) does --------------------------------------------------------------------

    def as_io(self, fn: Callable[[], None]) -> None:
        assert not self.closed, "the IO thread of a closed hub runs nothing"
        self._io = True
        try:
            fn()
        finally:
            self._io = False

    def deliverable(self, process: FakeProcess) -> bool:
        """A message waits and the real hub would hand it over now (a hello waits until its worker is expected)."""
        if self.closed or not process.wire:
            return False
        if process.worker_id in self.forgotten:
            return True  # dropped on delivery
        return process.worker_id in self.expected

    def deliver(self, process: FakeProcess) -> None:
        message = process.wire.popleft()
        if process.worker_id in self.forgotten:
            return  # the real hub rejects it as out of place
        if isinstance(message, HelloMsg):
            self.connected.add(process.worker_id)
            self.as_io(lambda: self._handler.on_hello(process.worker_id, Hello(pid=0, host="fake")))
        else:
            self.as_io(lambda: self._handler.on_reply(process.worker_id, message.task_id, message.reply))

    def exit_reportable(self, process: FakeProcess) -> bool:
        wid = process.worker_id
        return not self.closed and not process.alive and not process.exit_reported and wid in self.expected

    def report_exit(self, process: FakeProcess) -> None:
        process.exit_reported = True
        self.as_io(lambda: self._handler.on_exit(process.worker_id))

    def run_calls(self) -> None:
        while self.calls and not self.closed:
            self.as_io(self.calls.popleft())

    def fire_next_timer(self) -> None:
        deadline, _, fn = self.timers.pop(0)
        self.now = max(self.now, deadline)
        self.as_io(fn)

    # -- internals ------------------------------------------------------------------------------------------------

    def _reachable(self, worker_id: int, what: str) -> FakeProcess | None:
        if self.closed or worker_id not in self.connected or worker_id in self.forgotten:
            self._world.dropped.append((worker_id, what))
            return None
        return self._world.processes[worker_id]

    def _tasks(self, worker_id: int, task_ids: list[int]) -> None:
        process = self._reachable(worker_id, f"tasks {task_ids}")
        if process is None:
            return
        for task_id in task_ids:
            self._world.sends[task_id] += 1
            if process.alive:
                process.received.append(task_id)
            else:  # sent into a dead connection: lost with that worker
                self._world.deaths_holding[task_id] += 1

    def _forget(self, worker_id: int) -> None:
        self.forgotten.add(worker_id)
        self.expected.discard(worker_id)

"""Every message on the executor-worker wire, as a frozen dataclass (pure: no sockets here).

Executor to worker: Init, Task, Shutdown. Worker to executor: Hello, Result, Failure.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xl_serial import RemoteError


class Kind(enum.IntEnum):
    """The one-byte message kind in every header. The two directions never share a value, so a message cannot
    be reflected back to its sender."""

    INIT = 1
    TASK = 2
    SHUTDOWN = 3
    BATCH = 4  # several Task messages in one (see xl_comm.framing.pack_batch)
    SETTLED = 5  # MPI rank 0 to the other ranks: the call has been answered (see xl_comm.team)
    HELLO = 65
    RESULT = 66
    FAILURE = 67
    REPLIES = 68  # several Result/Failure messages in one
    # A dict of executorlib's 1.x-compatible socket API (executorlib.api): it travels both ways on a PAIR
    # socket under a key of its own, never on a Hub's sockets, so it is in neither direction's set.
    API_DICT = 96


TO_WORKER = frozenset({Kind.INIT, Kind.TASK, Kind.SHUTDOWN, Kind.BATCH, Kind.SETTLED})
TO_EXECUTOR = frozenset({Kind.HELLO, Kind.RESULT, Kind.FAILURE, Kind.REPLIES})


@dataclass(frozen=True, slots=True)
class Init:
    """Run ``fn()`` once on the worker; the returned dict supplies keyword arguments to later tasks."""

    fn: Callable[[], Mapping[str, Any]]

    kind = Kind.INIT


@dataclass(frozen=True, slots=True)
class Task:
    """Call ``fn(*args, **kwargs)``; on an exception append a report to ``error_log_file`` when it is set."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    error_log_file: str | None = None

    kind = Kind.TASK


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Finish the current task and exit."""

    kind = Kind.SHUTDOWN


@dataclass(frozen=True, slots=True)
class Settled:
    """Rank 0 has answered the call that just failed: a rank that raised need not end the MPI job itself."""

    kind = Kind.SETTLED


@dataclass(frozen=True, slots=True)
class Hello:
    """First message of a worker: who and where it is."""

    pid: int
    host: str

    kind = Kind.HELLO


@dataclass(frozen=True, slots=True)
class Result:
    """The return value of the task named in the header, and ``runtime``: the seconds the worker spent in the
    function (``time.perf_counter`` around the call only, so worker start-up and the wire are not in it; for an
    MPI task the longest rank's). The cache records it, as executorlib 1.x does. A measurement, not part of the
    answer: two Results with equal values are equal."""

    value: Any
    runtime: float = field(default=0.0, compare=False)

    kind = Kind.RESULT


@dataclass(frozen=True, slots=True)
class Failure:
    """The task named in the header raised (or its arguments or result could not cross the wire).

    ``ends_worker``: the worker exits right after this answer on purpose (an MPI job whose ranks were stuck after
    a failure), so a pool replaces it without counting a crash.
    """

    error: RemoteError
    ends_worker: bool = False

    kind = Kind.FAILURE


Message = Init | Task | Shutdown | Settled | Hello | Result | Failure

#: The class of each kind, to rebuild a message from the tuple of its fields.
MESSAGE_CLASSES: dict[Kind, type[Message]] = {
    Kind.INIT: Init,
    Kind.TASK: Task,
    Kind.SHUTDOWN: Shutdown,
    Kind.SETTLED: Settled,
    Kind.HELLO: Hello,
    Kind.RESULT: Result,
    Kind.FAILURE: Failure,
}

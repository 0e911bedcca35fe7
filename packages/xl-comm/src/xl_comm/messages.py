"""Every message on the executor-worker wire, as a frozen value class (pure: no sockets here).

Executor to worker: Init, Task, Shutdown. Worker to executor: Hello, Result, Failure.

The classes behave as ``@dataclass(frozen=True, slots=True)`` would (keyword or positional fields, equality and
hash by field, repr, assignment refused with ``dataclasses.FrozenInstanceError``), but are written out: the
dataclass decorator compiles six methods per class at import, about 5 ms of every worker's start for these seven
classes (issue 17, row 15). ``__slots__`` lists the fields in order (framing packs a message as that tuple).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError  # cloudpickle imports dataclasses anyway: no cost here
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from xl_serial import RemoteError  # only Failure's annotation: the worker's start need not load it

_set = object.__setattr__


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


class _Frozen:
    """What the message classes share: immutability, equality and hash over ``_compared`` (the fields, unless a
    class leaves one out), repr, and pickling by field."""

    __slots__: ClassVar[tuple[str, ...]] = ()
    #: the fields that equality and hash look at (all of them, unless a class says otherwise)
    _compared: ClassVar[tuple[str, ...] | None] = None

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def _values(self) -> tuple[Any, ...]:
        names = self.__slots__ if self._compared is None else self._compared
        return tuple(getattr(self, name) for name in names)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return type(self), tuple(getattr(self, name) for name in self.__slots__)


class Init(_Frozen):
    """Run ``fn()`` once on the worker; the returned dict supplies keyword arguments to later tasks."""

    __slots__ = ("fn",)
    kind = Kind.INIT
    fn: Callable[[], Mapping[str, Any]]

    def __init__(self, fn: Callable[[], Mapping[str, Any]]) -> None:
        _set(self, "fn", fn)


class Task(_Frozen):
    """Call ``fn(*args, **kwargs)``; on an exception append a report to ``error_log_file`` when it is set."""

    __slots__ = ("fn", "args", "kwargs", "error_log_file")  # noqa: RUF023 (field order)
    kind = Kind.TASK
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    error_log_file: str | None

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        error_log_file: str | None = None,
    ) -> None:
        _set(self, "fn", fn)
        _set(self, "args", args)
        _set(self, "kwargs", {} if kwargs is None else kwargs)
        _set(self, "error_log_file", error_log_file)


class Shutdown(_Frozen):
    """Finish the current task and exit."""

    __slots__ = ()
    kind = Kind.SHUTDOWN


class Settled(_Frozen):
    """Rank 0 has answered the call that just failed: a rank that raised need not end the MPI job itself."""

    __slots__ = ()
    kind = Kind.SETTLED


class Hello(_Frozen):
    """First message of a worker: who and where it is."""

    __slots__ = ("pid", "host")  # noqa: RUF023 (field order)
    kind = Kind.HELLO
    pid: int
    host: str

    def __init__(self, pid: int, host: str) -> None:
        _set(self, "pid", pid)
        _set(self, "host", host)


class Result(_Frozen):
    """The return value of the task named in the header, and ``runtime``: the seconds the worker spent in the
    function (``time.perf_counter`` around the call only, so worker start-up and the wire are not in it; for an
    MPI task the longest rank's). The cache records it, as executorlib 1.x does. A measurement, not part of the
    answer: two Results with equal values are equal."""

    __slots__ = ("value", "runtime")  # noqa: RUF023 (field order)
    _compared = ("value",)
    kind = Kind.RESULT
    value: Any
    runtime: float

    def __init__(self, value: Any, runtime: float = 0.0) -> None:
        _set(self, "value", value)
        _set(self, "runtime", runtime)


class Failure(_Frozen):
    """The task named in the header raised (or its arguments or result could not cross the wire).

    ``ends_worker``: the worker exits right after this answer on purpose (an MPI job whose ranks were stuck after
    a failure), so a pool replaces it without counting a crash.
    """

    __slots__ = ("error", "ends_worker")  # noqa: RUF023 (field order)
    kind = Kind.FAILURE
    error: RemoteError
    ends_worker: bool

    def __init__(self, error: RemoteError, ends_worker: bool = False) -> None:
        _set(self, "error", error)
        _set(self, "ends_worker", ends_worker)


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

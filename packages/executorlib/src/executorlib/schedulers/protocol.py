"""The one protocol every scheduler implements; executors/base.py talks to nothing else.

A scheduler decides when and where a submitted call runs (a fresh worker per call, a pool of long-lived workers,
or a task file per call) and completes its Future; how a worker or a job starts is its launcher's business
(executorlib.launchers).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from executorlib.resources import Resources
from executorlib.status import SchedulerState

if TYPE_CHECKING:
    from xl_comm import Hub


class Scheduler(Protocol):
    #: True: Future arguments and cached results are the scheduler's business (task files link a call to the jobs
    #: of its upstream calls and find results in the cache directory). False: the executor waits for Future
    #: arguments and looks the result cache up before it submits.
    handles_dependencies: bool

    @property
    def hub_ref(self) -> weakref.ref[Hub] | None:
        """The hub whose replies complete this scheduler's Futures, if any: their ``result()`` helps it."""

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        resources: Resources,
        extras: Mapping[str, Any],
        future: Future[Any],
    ) -> None:
        """Run ``fn(*args, **kwargs)`` with ``resources`` (``extras``: job template variables, file mode only) and
        complete ``future``; a problem with this one call (it cannot be pickled, say) fails the Future. Raises
        RuntimeError once shut down."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...

    @property
    def queued(self) -> int:
        """Calls accepted and not yet handed to a worker or a job."""

    def pending(self) -> list[Future[Any]]:
        """The Futures of those calls, in order (a snapshot)."""

    def info(self) -> dict[str, Any]: ...

    def state(self) -> SchedulerState:
        """How tasks run, by what, how many workers are alive and how many calls wait (for the ``repr``)."""

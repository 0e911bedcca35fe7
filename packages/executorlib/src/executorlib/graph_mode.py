"""Graph mode (``plot_dependency_graph=True`` or an output filename): record the workflow, run nothing.

As in executorlib 1.x, every Future resolves at once to None, and the picture or the workflow JSON is written
when the executor shuts down.
"""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from xl_graph import FutureSelector, TaskGraph, find_futures, render, to_workflow_json

from executorlib.errors import MissingExtraError
from executorlib.status import SchedulerState


def producers(args: tuple[Any, ...], kwargs: dict[str, Any], task_of: Mapping[Future[Any], int]) -> dict[int, int]:
    """``id(future) -> task id`` for the Futures among the arguments that recorded tasks produce (a selector
    counts as the Future it selects from), as :meth:`xl_graph.TaskGraph.add_task` takes them."""
    found: dict[int, int] = {}
    for argument in find_futures((args, kwargs)):
        base = argument.future if isinstance(argument, FutureSelector) else argument
        producer = task_of.get(base)
        if producer is not None:
            found[id(base)] = producer
    return found


class GraphRecorder:
    """Stands in for a scheduler: remembers tasks and the Futures that link them."""

    def __init__(self, *, picture: str | None, show: bool, workflow: str | None) -> None:
        self.graph = TaskGraph()
        self._picture = picture
        self._show = show
        self._workflow = workflow
        self._task_of: dict[Future[Any], int] = {}
        self._ids = itertools.count()
        self._written = False

    def record(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        task_id = next(self._ids)
        self.graph.add_task(task_id, fn, args, kwargs, producers(args, kwargs, self._task_of))
        future: Future[Any] = Future()
        future.set_result(None)
        self._task_of[future] = task_id  # keeps the Future, so it stays known for later tasks
        return future

    def write(self) -> None:
        if self._written:
            return
        self._written = True
        if self._workflow is not None:
            with open(self._workflow, "w", encoding="utf-8") as handle:
                json.dump(to_workflow_json(self.graph), handle, indent=2)
        if self._picture is not None:
            try:
                render(self.graph, self._picture)
            except ImportError as missing:  # no renderer here; pygraphviz draws without Graphviz's dot
                raise MissingExtraError(f'{missing}; pip install "executorlib[graph]" brings pygraphviz') from missing
        elif self._show:
            _display_inline(self.graph)


def _display_inline(graph: TaskGraph) -> None:
    """Show the picture in Jupyter; outside IPython there is nowhere to show it, so say how to save it."""
    try:
        import IPython.display
        from IPython import get_ipython

        # IPython's display functions are untyped: as Any, mypy --strict passes with IPython installed or not
        show: Any = IPython.display.display
        svg: Any = IPython.display.SVG
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        import warnings

        warnings.warn(
            "plot_dependency_graph=True outside Jupyter: pass plot_dependency_graph_filename='graph.png' (or .svg, "
            ".dot) to save the picture",
            UserWarning,
            stacklevel=3,
        )
        return
    show(svg(render(graph, None)))


class NoScheduler:
    """The scheduler of an executor in graph mode: nothing runs, so nothing is started."""

    queued = 0
    hub_ref = None
    handles_dependencies = True  # nothing is parked: graph mode records the Futures themselves

    def submit(self, *call: Any) -> None:  # pragma: no cover - graph mode records instead of submitting
        raise RuntimeError("an executor in graph mode runs nothing")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass

    def pending(self) -> list[Future[Any]]:
        return []

    def info(self) -> dict[str, Any]:
        return {"plot_dependency_graph": True}

    def state(self) -> SchedulerState:
        return SchedulerState("graph mode (records, runs nothing)", "none", None, "workers", 0)


class LiveGraph:
    """The graph of a run that executes (``record_dependency_graph=True``): function names, argument
    summaries and the Futures that link tasks, but never the argument values, so a long run keeps no arrays
    alive. Tasks are known by their Futures through weak references."""

    _SUMMARY_CHARS = 40

    def __init__(self) -> None:
        self.graph = TaskGraph()
        self._task_of: weakref.WeakKeyDictionary[Future[Any], int] = weakref.WeakKeyDictionary()
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def record(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], future: Future[Any]
    ) -> None:
        with self._lock:
            upstream = producers(args, kwargs, self._task_of)
            task_id = next(self._ids)
            self._task_of[future] = task_id
        self.graph.add_task(task_id, fn, self._summary(args), self._summary(kwargs), upstream)

    def _summary(self, value: Any) -> Any:
        """``value`` with its containers and Futures kept and every other leaf replaced by a short repr."""
        if isinstance(value, Future):
            return value
        if isinstance(value, dict):
            return {key: self._summary(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset) and len(value) <= 64:
            items = [self._summary(item) for item in value]
            return tuple(items) if isinstance(value, tuple) else items
        text = repr(value)
        return text if len(text) <= self._SUMMARY_CHARS else text[: self._SUMMARY_CHARS - 3] + "..."

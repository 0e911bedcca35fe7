"""The dependency graph of submitted tasks: which task's output feeds which argument of which task.

:class:`TaskGraph` records each task with its function, its arguments and, for the Futures among them, the task
that produces each one. From that it derives the nodes and edges that :mod:`xl_graph.export` and
:mod:`xl_graph.draw` write, and a ``networkx.DiGraph`` (networkx is imported only when that is asked for).

Nodes: one ``"function"`` node per task; one ``"input"`` node per plain argument value (not shared between
arguments or tasks, so equal values never merge); and for a list/tuple/set or dict argument that contains Futures,
a helper ``"function"`` node ``python_workflow_definition.shared.get_list`` / ``get_dict`` that collects its
items, as in the Python Workflow Definition. Edges carry a ``source_port`` (the selector of a
:class:`~xl_graph.futures.FutureSelector`, else ``None``) and a ``target_port`` (the parameter name, the position
for arguments the signature cannot name, the index or key inside a collected list or dict).
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xl_graph.futures import FutureSelector, has_futures

if TYPE_CHECKING:
    import networkx

__all__ = ["GET_DICT", "GET_LIST", "GraphEdge", "GraphNode", "TaskGraph"]

GET_LIST = "python_workflow_definition.shared.get_list"
GET_DICT = "python_workflow_definition.shared.get_dict"

NodeKey = int | str
"""A task's node is keyed by its task id; other nodes by a string such as ``"input:3:0"``."""


@dataclass(frozen=True)
class _Ref:
    """An argument that is the output (or a selected part of it) of a task in the graph."""

    port: str
    producer: int
    source_port: str | None


@dataclass(frozen=True)
class _Value:
    """A plain argument value; ``external`` for a Future that no task of this graph produces."""

    port: str
    value: Any
    external: bool = False


@dataclass(frozen=True)
class _Collect:
    """A list/tuple/set (``kind="list"``) or dict (``kind="dict"``) argument with Futures inside."""

    port: str
    kind: str
    items: tuple[_Argument, ...]


#: How one argument of a task (a parameter, a position, or an item inside a container) is bound.
_Argument = _Ref | _Value | _Collect


@dataclass(frozen=True)
class _Task:
    task_id: int
    order: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    arguments: tuple[_Argument, ...]


@dataclass(frozen=True)
class GraphNode:
    """One node of the graph as the exporters see it."""

    key: NodeKey
    kind: str
    """``"function"`` (a task or a get_list/get_dict helper) or ``"input"``."""
    label: str
    """The function's ``__name__``; for an input, a short text of its value."""
    function: str | None = None
    """``module.name`` of a function node."""
    task_id: int | None = None
    """The task of a task node; for a helper or input node, the task it feeds."""
    name: str | None = None
    """An input's port (parameter name, position, index or key)."""
    value: Any = None
    """An input's value."""
    external: bool = False
    """An input that is a Future produced outside this graph."""
    path: str | None = None
    """Where an input sits in the task's arguments, e.g. ``"x"`` or ``"x[0]['a']"``."""


@dataclass(frozen=True)
class GraphEdge:
    """One connection; two tasks may be connected more than once (``f(a, a)``), each time by its own edge."""

    source: NodeKey
    target: NodeKey
    source_port: str | None
    target_port: str


def callable_name(fn: Callable[..., Any]) -> tuple[str, str]:
    """``(name, "module.name")`` of a function, a functools.partial or a callable object."""
    inner = getattr(fn, "func", fn)  # functools.partial
    name = getattr(inner, "__name__", None) or type(inner).__name__
    module = getattr(inner, "__module__", None) or type(inner).__module__
    return str(name), f"{module}.{name}"


def short_text(value: Any, width: int = 40) -> str:
    """A one-line repr of ``value`` of at most ``width`` characters."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _argument_ports(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    """(port, value) per argument: parameter names where the signature binds, positions and keys otherwise."""
    try:
        signature = inspect.signature(fn)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return [(str(i), a) for i, a in enumerate(args)] + [(str(k), v) for k, v in kwargs.items()]
    ports: list[tuple[str, Any]] = []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            start = len(args) - len(value)
            ports.extend((str(start + i), v) for i, v in enumerate(value))
        elif kind is inspect.Parameter.VAR_KEYWORD:
            ports.extend((str(k), v) for k, v in value.items())
        else:
            ports.append((name, value))
    return ports


def _producer(future: Future[Any], upstream: Mapping[int, int]) -> tuple[int, str | None] | None:
    """The task producing ``future`` and the selector path from its output, or ``None`` when no task does.

    A :class:`FutureSelector` is followed down to the deepest wrapped Future that ``upstream`` knows, so a
    mapping of either the selector or the Future it selects from works.
    """
    found: tuple[int, str | None] | None = None
    selectors: list[str] = []
    current: Future[Any] = future
    while True:
        task = upstream.get(id(current))
        if task is not None:
            found = (task, ".".join(selectors) if selectors else None)
        if not isinstance(current, FutureSelector):
            return found
        selectors.insert(0, str(current.selector))
        current = current.future


def _argument(port: str, value: Any, upstream: Mapping[int, int]) -> _Argument:
    if isinstance(value, Future):
        found = _producer(value, upstream)
        if found is None:
            return _Value(port, value, external=True)
        return _Ref(port, found[0], found[1])
    if isinstance(value, dict) and has_futures(value):
        return _Collect(port, "dict", tuple(_argument(str(k), v, upstream) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)) and has_futures(value):
        return _Collect(port, "list", tuple(_argument(str(i), v, upstream) for i, v in enumerate(value)))
    return _Value(port, value)


def _refs(arguments: Iterable[_Argument]) -> Iterable[_Ref]:
    for argument in arguments:
        if isinstance(argument, _Ref):
            yield argument
        elif isinstance(argument, _Collect):
            yield from _refs(argument.items)


class TaskGraph:
    """The tasks of a workflow and the Futures that connect them. Safe to fill from several threads."""

    def __init__(self) -> None:
        self._tasks: dict[int, _Task] = {}
        self._lock = threading.Lock()
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __repr__(self) -> str:
        return f"<TaskGraph with {len(self._tasks)} tasks>"

    @property
    def task_ids(self) -> list[int]:
        """The task ids in the order they were added."""
        with self._lock:
            return list(self._tasks)

    def add_task(
        self,
        task_id: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        upstream: Mapping[int, int],
    ) -> None:
        """Record a task.

        ``upstream`` maps ``id(future)`` to the id of the task that produces that Future, for the Futures found
        in ``args`` and ``kwargs`` (at any depth of lists, tuples, dicts and sets). For a
        :class:`~xl_graph.futures.FutureSelector` either the selector or the Future it selects from may be
        mapped; the selector becomes the edge's source port. A Future that ``upstream`` does not map becomes an
        input node (a Future from outside the graph). The producing task may be added later; it must exist by
        the time the graph is exported.

        The argument structure is read now: changing the containers afterwards does not change the graph.
        """
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            raise TypeError(f"TaskGraph.add_task: task_id must be an int, got {type(task_id).__name__}: {task_id!r}")
        if not callable(fn):
            raise TypeError(f"TaskGraph.add_task: fn must be callable, got {type(fn).__name__}: {fn!r}")
        args = tuple(args)
        kwargs = dict(kwargs)
        for key, producer in upstream.items():
            if isinstance(producer, bool) or not isinstance(producer, int):
                raise TypeError(
                    f"TaskGraph.add_task: upstream must map id(future) to an int task id, got {producer!r} for "
                    f"key {key!r}"
                )
        arguments = tuple(_argument(port, value, upstream) for port, value in _argument_ports(fn, args, kwargs))
        with self._lock:
            if task_id in self._tasks:
                raise ValueError(f"TaskGraph.add_task: task id {task_id} is already in the graph")
            self._tasks[task_id] = _Task(task_id, next(self._order), fn, args, kwargs, arguments)

    def _snapshot(self) -> list[_Task]:
        with self._lock:
            tasks = list(self._tasks.values())
        known = {task.task_id for task in tasks}
        for task in tasks:
            for ref in _refs(task.arguments):
                if ref.producer not in known:
                    name = callable_name(task.fn)[0]
                    raise ValueError(
                        f"TaskGraph: argument {ref.port!r} of task {task.task_id} ({name}) comes from task "
                        f"{ref.producer}, which is not in the graph"
                    )
        return tasks

    def topological_order(self) -> list[int]:
        """Task ids such that every task comes after the tasks it depends on; ties keep the order of
        ``add_task``. Raises ``ValueError`` for a cycle or a producer missing from the graph."""
        tasks = self._snapshot()
        order = {task.task_id: task.order for task in tasks}
        waiting_on: dict[int, int] = {}
        dependents: dict[int, list[int]] = {task.task_id: [] for task in tasks}
        for task in tasks:
            producers = {ref.producer for ref in _refs(task.arguments)}
            waiting_on[task.task_id] = len(producers)
            for producer in producers:
                dependents[producer].append(task.task_id)
        ready = [(order[t], t) for t, n in waiting_on.items() if n == 0]
        heapq.heapify(ready)
        result: list[int] = []
        while ready:
            _, task_id = heapq.heappop(ready)
            result.append(task_id)
            for dependent in dependents[task_id]:
                waiting_on[dependent] -= 1
                if waiting_on[dependent] == 0:
                    heapq.heappush(ready, (order[dependent], dependent))
        if len(result) != len(tasks):
            stuck = sorted(t for t, n in waiting_on.items() if n > 0)
            raise ValueError(f"TaskGraph: the tasks {stuck} depend on each other in a cycle")
        return result

    def elements(self) -> tuple[list[GraphNode], list[GraphEdge]]:
        """All nodes and edges, tasks in the order they were added, each followed by its helper and input nodes.

        Unlike :meth:`to_networkx`, repeated connections between the same two nodes are separate edges here.
        """
        nodes: list[GraphNode] = []
        edges: list[GraphEdge] = []
        for task in self._snapshot():
            label, function = callable_name(task.fn)
            nodes.append(GraphNode(task.task_id, "function", label, function=function, task_id=task.task_id))
            counter = itertools.count()

            def emit(
                argument: _Argument, target: NodeKey, path: str, task_id: int = task.task_id, counter: Any = counter
            ) -> None:
                if isinstance(argument, _Ref):
                    edges.append(GraphEdge(argument.producer, target, argument.source_port, argument.port))
                elif isinstance(argument, _Value):
                    key = f"input:{task_id}:{next(counter)}"
                    text = "external Future" if argument.external else short_text(argument.value)
                    nodes.append(
                        GraphNode(
                            key,
                            "input",
                            text,
                            task_id=task_id,
                            name=argument.port,
                            value=argument.value,
                            external=argument.external,
                            path=path,
                        )
                    )
                    edges.append(GraphEdge(key, target, None, argument.port))
                else:
                    key = f"{argument.kind}:{task_id}:{next(counter)}"
                    helper = GET_DICT if argument.kind == "dict" else GET_LIST
                    nodes.append(GraphNode(key, "function", helper.rsplit(".", 1)[1], function=helper, task_id=task_id))
                    edges.append(GraphEdge(key, target, None, argument.port))
                    for item in argument.items:
                        emit(item, key, f"{path}[{item.port!r}]" if argument.kind == "dict" else f"{path}[{item.port}]")

            for argument in task.arguments:
                emit(argument, task.task_id, argument.port)
        return nodes, edges

    def to_networkx(self) -> networkx.DiGraph:
        """The graph as a ``networkx.DiGraph``.

        Node attributes: ``label`` and ``kind`` (``"function"`` or ``"input"``), plus ``function`` and
        ``task_id`` on function nodes and ``name``, ``value`` (and ``external``) on input nodes. Edge attributes:
        ``source_port``, ``target_port`` and ``ports``, the list of every ``(source_port, target_port)``
        between the two nodes (a DiGraph keeps one edge per pair; the first connection gives the two single
        attributes).
        """
        nodes, edges = self.elements()
        return build_digraph(
            ((node.key, _node_attributes(node)) for node in nodes),
            ((edge.source, edge.target, edge.source_port, edge.target_port) for edge in edges),
        )


def _node_attributes(node: GraphNode) -> dict[str, Any]:
    attributes: dict[str, Any] = {"label": node.label, "kind": node.kind}
    if node.kind == "function":
        attributes["function"] = node.function
        attributes["task_id"] = node.task_id
    else:
        attributes["name"] = node.name
        attributes["value"] = node.value
        attributes["external"] = node.external
    return attributes


def build_digraph(
    nodes: Iterable[tuple[NodeKey, dict[str, Any]]],
    edges: Iterable[tuple[NodeKey, NodeKey, str | None, str | None]],
) -> networkx.DiGraph:
    """A DiGraph from nodes and (source, target, source_port, target_port) edges, merging repeated pairs."""
    import networkx

    graph = networkx.DiGraph()
    for key, attributes in nodes:
        graph.add_node(key, **attributes)
    for source, target, source_port, target_port in edges:
        if graph.has_edge(source, target):
            graph.edges[source, target]["ports"].append((source_port, target_port))
        else:
            graph.add_edge(
                source, target, source_port=source_port, target_port=target_port, ports=[(source_port, target_port)]
            )
    return graph

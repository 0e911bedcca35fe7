"""TaskGraph: edges from Futures anywhere in the arguments, ports, order, networkx view, errors."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future
from typing import Any

import networkx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xl_graph import FutureSelector, TaskGraph, get_item_from_future, split_future


def add(x: Any, y: Any = 0) -> Any:
    return x


def gather(*items: Any, **named: Any) -> Any:
    return items


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[int, set[tuple[int, int]], list[int]]:
    """(number of tasks, edges producer -> consumer with producer < consumer, the order tasks are added in)."""
    n = draw(st.integers(1, 12))
    edges: set[tuple[int, int]] = set()
    for consumer in range(1, n):
        for producer in draw(st.sets(st.integers(0, consumer - 1), max_size=3)):
            edges.add((producer, consumer))
    insertion = draw(st.permutations(list(range(n))))
    return n, edges, list(insertion)


placements = st.sampled_from(["arg", "kwarg", "list", "nested", "dict", "selector", "selector-mapped", "tuple"])


@settings(max_examples=150)
@given(random_dags(), st.data())
def test_order_respects_every_edge_for_random_dags(dag: tuple[int, set[tuple[int, int]], list[int]], data: Any) -> None:
    n, edges, insertion = dag
    futures: list[Future[Any]] = [Future() for _ in range(n)]
    graph = TaskGraph()
    for task in insertion:
        producers = sorted(p for p, c in edges if c == task)
        args: list[Any] = [f"task {task}"]
        kwargs: dict[str, Any] = {}
        upstream: dict[int, int] = {}
        for i, producer in enumerate(producers):
            future: Future[Any] = futures[producer]
            upstream[id(future)] = producer
            where = data.draw(placements)
            if where == "selector":
                future = FutureSelector(future, i)
            elif where == "selector-mapped":
                future = FutureSelector(future, "k")
                upstream[id(future)] = producer
            if where == "kwarg":
                kwargs[f"k{i}"] = future
            elif where == "list":
                args.append([1, future])
            elif where == "nested":
                args.append([{"a": [future]}])
            elif where == "dict":
                kwargs[f"d{i}"] = {"x": future, "y": 2}
            elif where == "tuple":
                args.append((future, 3))
            else:
                args.append(future)
        graph.add_task(task, gather, tuple(args), kwargs, upstream)

    order = graph.topological_order()
    assert sorted(order) == list(range(n))
    position = {task: i for i, task in enumerate(order)}
    for producer, consumer in edges:
        assert position[producer] < position[consumer]

    g = graph.to_networkx()
    assert networkx.is_directed_acyclic_graph(g)
    tasks = [node for node in g if isinstance(node, int)]
    assert sorted(tasks) == list(range(n))
    linked = {(p, c) for c in tasks for p in task_producers(g, c)}
    assert linked == edges
    for node, attributes in g.nodes(data=True):
        assert attributes["kind"] in ("function", "input")
        if isinstance(node, int):
            assert attributes["label"] == "gather"


def task_producers(g: Any, consumer: int) -> set[int]:
    """The tasks whose output reaches ``consumer`` directly or through get_list/get_dict helpers only."""
    found: set[int] = set()
    stack = list(g.predecessors(consumer))
    while stack:
        node = stack.pop()
        if isinstance(node, int):
            found.add(node)
        else:
            stack.extend(g.predecessors(node))
    return found


def test_insertion_order_is_kept_without_edges() -> None:
    graph = TaskGraph()
    for task in [5, 2, 9, 1]:
        graph.add_task(task, add, (task,), {}, {})
    assert graph.topological_order() == [5, 2, 9, 1]
    assert graph.task_ids == [5, 2, 9, 1]
    assert len(graph) == 4 and 9 in graph and 3 not in graph


def test_ports_are_parameter_names_positions_and_keys() -> None:
    a: Future[Any] = Future()
    b: Future[Any] = Future()
    graph = TaskGraph()
    graph.add_task(0, add, (1,), {}, {})
    graph.add_task(1, add, (2,), {}, {})
    graph.add_task(2, add, (a,), {"y": b}, {id(a): 0, id(b): 1})
    graph.add_task(3, gather, (7, a), {"extra": b}, {id(a): 0, id(b): 1})
    graph.add_task(4, max, (a, b), {}, {id(a): 0, id(b): 1})  # no signature: positions
    g = graph.to_networkx()
    assert g.edges[0, 2]["target_port"] == "x"
    assert g.edges[1, 2]["target_port"] == "y"
    assert g.edges[0, 3]["target_port"] == "1"
    assert g.edges[1, 3]["target_port"] == "extra"
    assert g.edges[0, 4]["target_port"] == "0"
    assert g.edges[1, 4]["target_port"] == "1"
    assert all(g.edges[e]["source_port"] is None for e in g.edges if isinstance(e[0], int))


def test_selectors_are_source_ports_whichever_future_is_mapped() -> None:
    pair: Future[Any] = Future()
    first, second = split_future(pair, 2)
    nested = get_item_from_future(first, "energy")
    graph = TaskGraph()
    graph.add_task(0, add, (1,), {}, {})
    graph.add_task(1, add, (first, second), {}, {id(pair): 0})
    graph.add_task(2, add, (nested,), {}, {id(first): 0})  # the selector itself is mapped: its selector is lost
    graph.add_task(3, add, (nested,), {}, {id(pair): 0})
    _, edges = graph.elements()
    ports = {(e.source, e.target, e.target_port): e.source_port for e in edges}
    assert ports[0, 1, "x"] == "0"
    assert ports[0, 1, "y"] == "1"
    assert ports[0, 2, "x"] == "energy"
    assert ports[0, 3, "x"] == "0.energy"
    g = graph.to_networkx()
    assert g.edges[0, 1]["ports"] == [("0", "x"), ("1", "y")]  # one DiGraph edge, both connections


def test_the_same_future_twice_gives_two_edges() -> None:
    f: Future[Any] = Future()
    graph = TaskGraph()
    graph.add_task(0, add, (1,), {}, {})
    graph.add_task(1, add, (f, f), {}, {id(f): 0})
    _, edges = graph.elements()
    assert [(e.source, e.target, e.target_port) for e in edges if e.source == 0] == [(0, 1, "x"), (0, 1, "y")]
    assert graph.to_networkx().edges[0, 1]["ports"] == [(None, "x"), (None, "y")]


def test_lists_and_dicts_with_futures_get_helper_nodes() -> None:
    f: Future[Any] = Future()
    graph = TaskGraph()
    graph.add_task(0, add, (1,), {}, {})
    graph.add_task(1, add, ([f, 2],), {"y": {"a": f, "b": [3]}}, {id(f): 0})
    g = graph.to_networkx()
    helpers = {g.nodes[n]["function"]: n for n in g if isinstance(n, str) and g.nodes[n]["kind"] == "function"}
    get_list = helpers["python_workflow_definition.shared.get_list"]
    get_dict = helpers["python_workflow_definition.shared.get_dict"]
    assert g.nodes[get_list]["label"] == "get_list" and g.nodes[get_dict]["label"] == "get_dict"
    assert g.edges[get_list, 1]["target_port"] == "x"
    assert g.edges[get_dict, 1]["target_port"] == "y"
    assert g.edges[0, get_list]["target_port"] == "0"
    assert g.edges[0, get_dict]["target_port"] == "a"
    inputs = {g.nodes[n]["name"]: g.nodes[n]["value"] for n in g if g.nodes[n]["kind"] == "input"}
    assert inputs == {"x": 1, "1": 2, "b": [3]}  # task 0's x=1, the list's [1]=2, the dict's "b"=[3]
    assert graph.topological_order() == [0, 1]


def test_a_future_not_produced_in_the_graph_is_an_external_input() -> None:
    outside: Future[Any] = Future()
    graph = TaskGraph()
    graph.add_task(0, add, (outside,), {}, {})
    g = graph.to_networkx()
    (node,) = [n for n in g if g.nodes[n]["kind"] == "input"]
    assert g.nodes[node]["external"] is True and g.nodes[node]["value"] is outside
    assert graph.topological_order() == [0]


def test_partial_and_callable_objects_are_named() -> None:
    class Scale:
        def __call__(self, x: Any) -> Any:
            return x

    graph = TaskGraph()
    graph.add_task(0, functools.partial(add, y=2), (1,), {}, {})
    graph.add_task(1, Scale(), (1,), {}, {})
    g = graph.to_networkx()
    assert g.nodes[0]["label"] == "add" and g.nodes[0]["function"].endswith(".add")
    assert g.nodes[1]["label"] == "Scale"


def test_changing_the_arguments_later_does_not_change_the_graph() -> None:
    f: Future[Any] = Future()
    values = [1]
    kwargs: dict[str, Any] = {"y": values}
    graph = TaskGraph()
    graph.add_task(0, add, (1,), {}, {})
    graph.add_task(1, add, (f,), kwargs, {id(f): 0})
    values.append(f)
    kwargs["z"] = 5
    assert graph.to_networkx().number_of_edges() == 3


def test_errors_name_the_problem() -> None:
    graph = TaskGraph()
    graph.add_task(0, add, (1,), {}, {})
    with pytest.raises(ValueError, match="task id 0 is already in the graph"):
        graph.add_task(0, add, (1,), {}, {})
    with pytest.raises(TypeError, match="task_id must be an int"):
        graph.add_task("1", add, (), {}, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must be callable"):
        graph.add_task(1, 5, (), {}, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="upstream must map"):
        graph.add_task(1, add, (), {}, {1: "0"})  # type: ignore[dict-item]
    f: Future[Any] = Future()
    graph.add_task(1, add, (f,), {}, {id(f): 7})
    with pytest.raises(ValueError, match=r"argument 'x' of task 1 \(add\) comes from task 7"):
        graph.topological_order()
    with pytest.raises(ValueError, match="task 7"):
        graph.to_networkx()


def test_a_cycle_is_reported() -> None:
    a: Future[Any] = Future()
    b: Future[Any] = Future()
    graph = TaskGraph()
    graph.add_task(0, add, (b,), {}, {id(b): 1})
    graph.add_task(1, add, (a,), {}, {id(a): 0})
    graph.add_task(2, add, (1,), {}, {})
    with pytest.raises(ValueError, match=r"\[0, 1\] depend on each other in a cycle"):
        graph.topological_order()


def test_filled_from_many_threads() -> None:
    graph = TaskGraph()

    def fill(start: int) -> None:
        for task in range(start, start + 200):
            graph.add_task(task, add, (task,), {}, {})

    threads = [threading.Thread(target=fill, args=(i * 1000,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(graph) == 1600
    assert len(graph.topological_order()) == 1600

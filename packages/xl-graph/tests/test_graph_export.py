"""DOT text and the Python Workflow Definition: shape, schema, round trip, values JSON cannot hold."""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import Future
from typing import Any

import networkx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from xl_graph import TaskGraph, from_workflow_json, split_future, to_dot, to_workflow_json
from xl_graph.export import dot_name

# The Python Workflow Definition as executorlib 1.x writes it (version 0.1.0).
PORT = {"type": ["string", "null"]}
PWD_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["version", "nodes", "edges"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": "0.1.0"},
        "nodes": {
            "type": "array",
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["id", "type", "value"],
                        "additionalProperties": False,
                        "properties": {
                            "id": {"type": "integer", "minimum": 0},
                            "type": {"const": "function"},
                            "value": {"type": "string", "pattern": r"^[^.\s]+(\.[^.\s]+)+$"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["id", "type", "value", "name"],
                        "additionalProperties": False,
                        "properties": {
                            "id": {"type": "integer", "minimum": 0},
                            "type": {"const": "input"},
                            "value": {},
                            "name": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["id", "type", "name"],
                        "additionalProperties": False,
                        "properties": {
                            "id": {"type": "integer", "minimum": 0},
                            "type": {"const": "output"},
                            "name": {"type": "string"},
                        },
                    },
                ]
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["source", "sourcePort", "target", "targetPort"],
                "additionalProperties": False,
                "properties": {
                    "source": {"type": "integer", "minimum": 0},
                    "target": {"type": "integer", "minimum": 0},
                    "sourcePort": PORT,
                    "targetPort": PORT,
                },
            },
        },
    },
}
VALIDATOR = Draft7Validator(PWD_SCHEMA)


def prepare(n: int) -> Any:
    return n


def combine(x: Any, y: Any = None, **options: Any) -> Any:
    return x


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-100, 100),
        st.text(max_size=5),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def workflows(draw: st.DrawFn) -> TaskGraph:
    """A random graph: each task takes earlier tasks' outputs (plain, selected, inside lists or dicts) and
    JSON values."""
    graph = TaskGraph()
    futures: list[Future[Any]] = []
    for task in range(draw(st.integers(0, 8))):
        upstream: dict[int, int] = {}

        def argument(upstream: dict[int, int] = upstream) -> Any:
            if futures and draw(st.booleans()):
                producer = draw(st.integers(0, len(futures) - 1))
                upstream[id(futures[producer])] = producer
                future: Future[Any] = futures[producer]
                kind = draw(st.sampled_from(["plain", "selector", "list", "dict"]))
                if kind == "selector":
                    return split_future(future, 2)[draw(st.integers(0, 1))]
                if kind == "list":
                    return [future, draw(json_values)]
                if kind == "dict":
                    return {"a": future, "b": draw(json_values)}
                return future
            return draw(json_values)

        if task == 0 or draw(st.booleans()):
            graph.add_task(task, prepare, (argument(),), {}, upstream)
        else:
            graph.add_task(task, combine, (argument(),), {"y": argument(), "z": argument()}, upstream)
        futures.append(Future())
    return graph


def without_outputs(g: Any) -> Any:
    return g.subgraph(n for n in g if g.nodes[n]["kind"] != "output").copy()


def same_node(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["kind"] == b["kind"] and (a["kind"] != "function" or a["function"] == b["function"])


def same_edge(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["ports"] == b["ports"]  # type: ignore[no-any-return]


@settings(max_examples=80, deadline=None)
@given(workflows())
def test_workflow_json_validates_and_reads_back_to_the_same_structure(graph: TaskGraph) -> None:
    data = to_workflow_json(graph)
    VALIDATOR.validate(data)
    data = json.loads(json.dumps(data, allow_nan=False))  # really JSON
    original = graph.to_networkx()
    back = from_workflow_json(data)
    outputs = [n for n in back if back.nodes[n]["kind"] == "output"]
    assert len(outputs) == (1 if len(graph) else 0)
    if outputs:  # the output node is fed by the last task in topological order
        (source,) = back.predecessors(outputs[0])
        assert data["nodes"][source] == {
            "id": source,
            "type": "function",
            "value": original.nodes[graph.topological_order()[-1]]["function"],
        }
    back = without_outputs(back)
    assert back.number_of_nodes() == original.number_of_nodes()
    assert back.number_of_edges() == original.number_of_edges()
    assert networkx.is_isomorphic(original, back, node_match=same_node, edge_match=same_edge)
    ids = [node["id"] for node in data["nodes"]]
    assert ids == list(range(len(ids)))


@settings(max_examples=60, deadline=None)
@given(workflows())
def test_dot_text_names_every_node_and_edge(graph: TaskGraph) -> None:
    text = to_dot(graph)
    nodes, edges = graph.elements()
    assert text.startswith("digraph workflow {") and text.rstrip().endswith("}")
    for node in nodes:
        assert f'"{dot_name(node.key)}" [id="{dot_name(node.key)}"' in text
    arrows = [line for line in text.splitlines() if " -> " in line]
    assert len(arrows) == len(edges)
    for edge in edges:
        assert f'"{dot_name(edge.source)}" -> "{dot_name(edge.target)}"' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz dot binary is not installed")
def test_dot_parses_awkward_labels() -> None:
    def fn(x: Any, y: Any) -> Any:
        return x

    graph = TaskGraph()
    graph.add_task(0, fn, ('quote " and \\ backslash', "new\nline"), {}, {})
    graph.add_task(1, fn, ("{braces} [brackets] -> arrow;", "\u00e9\u2192\U0001f600"), {}, {})
    done = subprocess.run(["dot", "-Tcanon"], input=to_dot(graph).encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert b"task_0" in done.stdout and b"task_1" in done.stdout


def test_executorlib_shape_of_a_small_workflow() -> None:
    pair: Future[Any] = Future()
    first, second = split_future(pair, 2)
    graph = TaskGraph()
    graph.add_task(0, prepare, (3,), {}, {})
    graph.add_task(1, combine, (first,), {"y": [second, 5]}, {id(pair): 0})
    data = to_workflow_json(graph)
    assert data["version"] == "0.1.0"
    assert data["nodes"] == [
        {"id": 0, "type": "function", "value": f"{__name__}.prepare"},
        {"id": 1, "type": "input", "value": 3, "name": "n"},
        {"id": 2, "type": "function", "value": f"{__name__}.combine"},
        {"id": 3, "type": "function", "value": "python_workflow_definition.shared.get_list"},
        {"id": 4, "type": "input", "value": 5, "name": "1"},
        {"id": 5, "type": "output", "name": "result"},
    ]
    assert data["edges"] == [
        {"target": 0, "targetPort": "n", "source": 1, "sourcePort": None},
        {"target": 2, "targetPort": "x", "source": 0, "sourcePort": "0"},
        {"target": 2, "targetPort": "y", "source": 3, "sourcePort": None},
        {"target": 3, "targetPort": "0", "source": 0, "sourcePort": "1"},
        {"target": 3, "targetPort": "1", "source": 4, "sourcePort": None},
        {"target": 5, "targetPort": None, "source": 2, "sourcePort": None},
    ]


def test_numpy_values_become_lists_and_numbers() -> None:
    graph = TaskGraph()
    graph.add_task(0, combine, (np.arange(6).reshape(2, 3),), {"y": np.int64(7), "z": (np.float32(0.5), 1)}, {})
    values = {node["name"]: node["value"] for node in to_workflow_json(graph)["nodes"] if node["type"] == "input"}
    assert values == {"x": [[0, 1, 2], [3, 4, 5]], "y": 7, "z": [0.5, 1]}
    assert type(values["y"]) is int


class Opaque:
    pass


@pytest.mark.parametrize(
    ("kwargs", "argument", "type_name"),
    [
        ({"y": Opaque()}, "'y'", "Opaque"),
        ({"y": {1, 2}}, "'y'", "set"),
        ({"y": {(1, 2): 3}}, "'y'", "dict"),
        ({"y": [1, {"k": Opaque()}]}, "'y'", "list"),
    ],
)
def test_a_value_json_cannot_hold_names_argument_and_type(
    kwargs: dict[str, Any], argument: str, type_name: str
) -> None:
    graph = TaskGraph()
    graph.add_task(0, combine, (1,), kwargs, {})
    with pytest.raises(TypeError, match=rf"argument {argument} of task 0 \(combine\) has type .*{type_name}"):
        to_workflow_json(graph)


def test_the_path_inside_a_collected_argument_is_named() -> None:
    f: Future[Any] = Future()
    graph = TaskGraph()
    graph.add_task(0, prepare, (1,), {}, {})
    graph.add_task(1, combine, (1,), {"y": [f, {"k": f, "bad": Opaque()}]}, {id(f): 0})
    with pytest.raises(TypeError, match=r"argument \"y\[1\]\['bad'\]\" of task 1 \(combine\) has type .*Opaque"):
        to_workflow_json(graph)


def test_nan_and_infinity_pass_as_python_json_writes_them() -> None:
    graph = TaskGraph()
    graph.add_task(0, combine, (np.array([np.nan, np.inf]),), {}, {})
    (value,) = [node["value"] for node in to_workflow_json(graph)["nodes"] if node["type"] == "input"]
    assert np.isnan(value[0]) and value[1] == float("inf")


def test_an_external_future_cannot_be_exported() -> None:
    graph = TaskGraph()
    graph.add_task(0, combine, (Future(),), {}, {})
    with pytest.raises(TypeError, match=r"argument 'x' of task 0 \(combine\) is a Future"):
        to_workflow_json(graph)


def test_an_empty_graph() -> None:
    graph = TaskGraph()
    assert to_workflow_json(graph) == {"version": "0.1.0", "nodes": [], "edges": []}
    assert from_workflow_json(to_workflow_json(graph)).number_of_nodes() == 0
    assert to_dot(graph).count("->") == 0


def test_reads_a_hand_written_document() -> None:
    document = {
        "version": "0.1.0",
        "nodes": [
            {"id": 0, "type": "function", "value": "workflow.get_energy"},
            {"id": 1, "type": "input", "value": [1, 2], "name": "structure"},
            {"id": 2, "type": "output", "name": "result"},
        ],
        "edges": [
            {"target": 0, "targetPort": "structure", "source": 1, "sourcePort": None},
            {"target": 2, "targetPort": None, "source": 0, "sourcePort": None},
        ],
    }
    VALIDATOR.validate(document)
    g = from_workflow_json(document)
    assert g.nodes[0] == {"label": "get_energy", "kind": "function", "function": "workflow.get_energy"}
    assert g.nodes[1]["value"] == [1, 2] and g.nodes[1]["name"] == "structure"
    assert g.nodes[2]["kind"] == "output"
    assert g.edges[1, 0]["target_port"] == "structure"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a dict"),
        ({"nodes": []}, "no edges list"),
        ({"nodes": [{"type": "input"}], "edges": []}, "lacks an 'id'"),
        ({"nodes": [{"id": 0, "type": "magic"}], "edges": []}, "unknown type 'magic'"),
        ({"nodes": [{"id": 0, "type": "output"}, {"id": 0, "type": "output"}], "edges": []}, "not unique"),
        ({"nodes": [{"id": 0, "type": "output"}], "edges": [{"source": 0, "target": 3}]}, "node 3"),
        ({"nodes": [], "edges": [{"source": 0}]}, "lacks a 'source' or a 'target'"),
    ],
)
def test_a_malformed_document_is_rejected(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_workflow_json(document)

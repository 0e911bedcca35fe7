"""Write a :class:`~xl_graph.graph.TaskGraph` as DOT text or as a Python Workflow Definition, and read the latter.

Pure functions: no binary, no file, no optional dependency. :func:`from_workflow_json` needs networkx (a
dependency of this package), the others only the standard library.

The Python Workflow Definition (PWD) is the JSON that executorlib 1.x writes for ``export_workflow_filename``::

    {"version": "0.1.0",
     "nodes": [{"id": 0, "type": "function", "value": "module.name"},
               {"id": 1, "type": "input", "value": 1, "name": "x"},
               {"id": 2, "type": "output", "name": "result"}],
     "edges": [{"source": 1, "sourcePort": null, "target": 0, "targetPort": "x"},
               {"source": 0, "sourcePort": null, "target": 2, "targetPort": null}]}

A list or dict argument with Futures inside becomes a ``python_workflow_definition.shared.get_list`` /
``get_dict`` function node whose input ports are the indices or keys; a selected part of a result
(:func:`~xl_graph.futures.split_future`, :func:`~xl_graph.futures.get_item_from_future`) is the edge's
``sourcePort``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from xl_graph.graph import GraphNode, NodeKey, TaskGraph, build_digraph, short_text

if TYPE_CHECKING:
    import networkx

__all__ = ["PWD_VERSION", "from_workflow_json", "to_dot", "to_workflow_json"]

PWD_VERSION = "0.1.0"


# ---------------------------------------------------------------------------------------------------------------
# DOT


def dot_name(key: NodeKey) -> str:
    """The DOT node name (and SVG element id) of a graph node: ``task_<id>`` for a task."""
    return f"task_{key}" if isinstance(key, int) else key.replace(":", "_")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_node(node: GraphNode) -> str:
    name = dot_name(node.key)
    attributes = {"id": name, "label": node.label}
    if node.kind == "input":
        attributes["shape"] = "ellipse"
        attributes["style"] = "dashed" if node.external else "solid"
    elif isinstance(node.key, int):
        attributes.update(shape="box", style="filled", fillcolor="#dde8f5")
        attributes["tooltip"] = f"task {node.key}: {node.function}"
    else:  # get_list / get_dict helper
        attributes.update(shape="box", style="dashed")
    text = ", ".join(f"{k}={_quote(v)}" for k, v in attributes.items())
    return f"  {_quote(name)} [{text}];"


def to_dot(graph: TaskGraph) -> str:
    """The graph as Graphviz DOT text: one node per task (a box), per input value (an ellipse) and per
    get_list/get_dict helper (a dashed box); each edge labelled with its target port, and with its source port
    (the selector) at the tail when there is one. Node names and SVG ids are ``task_<id>`` for tasks."""
    nodes, edges = graph.elements()
    lines = [
        "digraph workflow {",
        "  rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    lines.extend(_dot_node(node) for node in nodes)
    for edge in edges:
        attributes = {"label": edge.target_port}
        if edge.source_port is not None:
            attributes["taillabel"] = edge.source_port
        text = ", ".join(f"{k}={_quote(v)}" for k, v in attributes.items())
        lines.append(f"  {_quote(dot_name(edge.source))} -> {_quote(dot_name(edge.target))} [{text}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Python Workflow Definition


def _numpy_default(obj: Any) -> Any:
    """json.dumps fallback: numpy arrays and scalars become lists and Python numbers; nothing else is accepted."""
    if type(obj).__module__.split(".")[0] == "numpy" and callable(getattr(obj, "tolist", None)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__module__}.{type(obj).__qualname__} is not JSON serializable")


def _json_value(node: GraphNode, owner: str) -> Any:
    where = f"argument {node.path or node.name!r} of task {node.task_id} ({owner})"
    if node.external:
        raise TypeError(
            f"to_workflow_json: {where} is a Future ({type(node.value).__name__}) that no task of this graph "
            "produces; submit the task that produces it to the same executor, or pass its result instead"
        )
    try:
        return json.loads(json.dumps(node.value, default=_numpy_default))
    except (TypeError, ValueError) as exc:
        kind = type(node.value)
        raise TypeError(
            f"to_workflow_json: {where} has type {kind.__module__}.{kind.__qualname__}, which JSON cannot hold "
            f"({exc}); pass JSON values (numbers, strings, booleans, None, lists, dicts with string keys, numpy "
            "arrays) to export the workflow"
        ) from exc


def to_workflow_json(graph: TaskGraph) -> dict[str, Any]:
    """The graph in the Python Workflow Definition format (see the module docstring).

    Node ids are 0, 1, ... in the order of :meth:`~xl_graph.graph.TaskGraph.elements`; an ``output`` node named
    ``"result"`` comes last, fed by the last task in topological order. numpy arrays and scalars become lists
    and numbers, tuples become lists; NaN and infinity are kept, as ``json.dump`` writes them by default. An
    input JSON cannot hold raises ``TypeError`` naming the argument, its task and its type. The result is ready
    for ``json.dump``.
    """
    nodes, edges = graph.elements()
    ids = {node.key: index for index, node in enumerate(nodes)}
    owners = {node.key: node.label for node in nodes if isinstance(node.key, int)}
    pwd_nodes: list[dict[str, Any]] = []
    for index, node in enumerate(nodes):
        if node.kind == "function":
            pwd_nodes.append({"id": index, "type": "function", "value": node.function})
        else:
            owner = owners.get(node.task_id, "?") if node.task_id is not None else "?"
            pwd_nodes.append({"id": index, "type": "input", "value": _json_value(node, owner), "name": node.name})
    pwd_edges: list[dict[str, Any]] = [
        {
            "target": ids[edge.target],
            "targetPort": edge.target_port,
            "source": ids[edge.source],
            "sourcePort": edge.source_port,
        }
        for edge in edges
    ]
    order = graph.topological_order()
    if order:
        output = len(pwd_nodes)
        pwd_nodes.append({"id": output, "type": "output", "name": "result"})
        pwd_edges.append({"target": output, "targetPort": None, "source": ids[order[-1]], "sourcePort": None})
    return {"version": PWD_VERSION, "nodes": pwd_nodes, "edges": pwd_edges}


def from_workflow_json(data: Mapping[str, Any]) -> networkx.DiGraph:
    """Read a Python Workflow Definition (a parsed JSON dict) back into a ``networkx.DiGraph``.

    Nodes are keyed by their JSON ``id``, with the attributes :meth:`~xl_graph.graph.TaskGraph.to_networkx`
    gives (``label``, ``kind``, ``function`` or ``name``/``value``); the output node has ``kind="output"``.
    Edges have ``source_port``, ``target_port`` and ``ports``. Raises ``ValueError`` for a malformed document.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"from_workflow_json: expected a dict, got {type(data).__name__}")
    missing = [key for key in ("nodes", "edges") if not isinstance(data.get(key), list)]
    if missing:
        raise ValueError(f"from_workflow_json: the document has no {' or '.join(missing)} list")
    nodes: list[tuple[NodeKey, dict[str, Any]]] = []
    for node in data["nodes"]:
        try:
            key, kind = node["id"], node["type"]
        except (KeyError, TypeError):
            raise ValueError(f"from_workflow_json: node {node!r} lacks an 'id' or a 'type'") from None
        if kind == "function":
            function = str(node.get("value", ""))
            nodes.append((key, {"label": function.rsplit(".", 1)[-1], "kind": "function", "function": function}))
        elif kind == "input":
            value = node.get("value")
            name = node.get("name")
            nodes.append((key, {"label": short_text(value), "kind": "input", "name": name, "value": value}))
        elif kind == "output":
            name = node.get("name", "result")
            nodes.append((key, {"label": str(name), "kind": "output", "name": name}))
        else:
            raise ValueError(f"from_workflow_json: node {key!r} has unknown type {kind!r}")
    known = {key for key, _ in nodes}
    if len(known) != len(nodes):
        raise ValueError("from_workflow_json: node ids are not unique")
    edges: list[tuple[NodeKey, NodeKey, str | None, str | None]] = []
    for edge in data["edges"]:
        try:
            source, target = edge["source"], edge["target"]
        except (KeyError, TypeError):
            raise ValueError(f"from_workflow_json: edge {edge!r} lacks a 'source' or a 'target'") from None
        for end in (source, target):
            if end not in known:
                raise ValueError(f"from_workflow_json: edge {edge!r} refers to node {end!r}, which does not exist")
        edges.append((source, target, edge.get("sourcePort"), edge.get("targetPort")))
    return build_digraph(nodes, edges)

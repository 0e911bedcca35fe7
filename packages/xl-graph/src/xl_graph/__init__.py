"""xl-graph: Futures inside arguments, the task dependency graph, its workflow export and its picture.

- :mod:`xl_graph.futures` (pure, standard library only): :class:`FutureSelector`, :func:`split_future`,
  :func:`get_item_from_future`, :func:`find_futures`, :func:`has_futures`, :func:`substitute`.
- :mod:`xl_graph.graph`: :class:`TaskGraph`, convertible to a ``networkx.DiGraph``.
- :mod:`xl_graph.export` (pure): :func:`to_dot`, :func:`to_workflow_json`, :func:`from_workflow_json`.
- :mod:`xl_graph.draw`: :func:`render` (Graphviz ``dot``, pygraphviz or matplotlib) and :class:`GraphPicture`.

Imports no other project package. Names load on first use, so ``from xl_graph import find_futures`` costs
neither networkx nor any renderer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xl_graph.draw import GraphPicture, render
    from xl_graph.export import from_workflow_json, to_dot, to_workflow_json
    from xl_graph.futures import (
        FutureSelector,
        find_futures,
        get_item_from_future,
        has_futures,
        split_future,
        substitute,
    )
    from xl_graph.graph import TaskGraph

_LAZY = {
    "FutureSelector": "futures",
    "find_futures": "futures",
    "get_item_from_future": "futures",
    "has_futures": "futures",
    "split_future": "futures",
    "substitute": "futures",
    "TaskGraph": "graph",
    "from_workflow_json": "export",
    "to_dot": "export",
    "to_workflow_json": "export",
    "GraphPicture": "draw",
    "render": "draw",
}

__all__ = [
    "FutureSelector",
    "GraphPicture",
    "TaskGraph",
    "find_futures",
    "from_workflow_json",
    "get_item_from_future",
    "has_futures",
    "render",
    "split_future",
    "substitute",
    "to_dot",
    "to_workflow_json",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("xl-graph")
    if name in _LAZY:
        return getattr(importlib.import_module(f"xl_graph.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'xl_graph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__, "__version__"])

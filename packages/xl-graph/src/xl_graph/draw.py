"""Pictures of a :class:`~xl_graph.graph.TaskGraph`: a file, SVG text, or an object Jupyter shows inline.

The DOT text (:func:`~xl_graph.export.to_dot`) is always made first. It is rendered by the first of these that
can produce the requested format:

1. the Graphviz ``dot`` binary on ``PATH`` (Debian/Ubuntu ``apt install graphviz``, conda ``graphviz``);
2. ``pygraphviz``, when importable (``pip install pygraphviz``);
3. ``matplotlib``, when importable (``pip install matplotlib``): layers from ``networkx.topological_generations``
   placed with ``networkx.multipartite_layout``, top to bottom.

None of them is a dependency of this package. A ``.dot`` or ``.gv`` filename needs none: the DOT text is written.
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
from typing import Any

from xl_graph.export import dot_name, to_dot
from xl_graph.graph import TaskGraph

__all__ = ["ENGINES", "GraphPicture", "render"]

ENGINES = ("dot", "pygraphviz", "matplotlib")
DOT_FORMATS = frozenset({"svg", "png", "pdf", "jpg", "jpeg", "gif", "ps", "eps"})
MATPLOTLIB_FORMATS = frozenset({"svg", "png", "pdf", "jpg", "jpeg", "ps", "eps"})
TEXT_FORMATS = frozenset({"dot", "gv"})

_INSTALL = {
    "dot": "the Graphviz dot binary (apt install graphviz, or conda install graphviz)",
    "pygraphviz": "pygraphviz (pip install pygraphviz)",
    "matplotlib": "matplotlib (pip install matplotlib)",
}


def _find_dot() -> str | None:
    return shutil.which("dot")


def _optional_module(name: str) -> Any:
    """The module, or ``None`` when it is not installed (or fails to import)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def file_format(filename: str) -> str:
    """The picture format a filename asks for, from its extension (lower case, no dot)."""
    extension = os.path.splitext(os.fspath(filename))[1].lower().lstrip(".")
    if extension in TEXT_FORMATS or extension in DOT_FORMATS:
        return extension
    known = ", ".join(sorted(TEXT_FORMATS | DOT_FORMATS))
    raise ValueError(f"render: cannot tell the picture format of {filename!r}; use one of the extensions {known}")


def render(
    graph: TaskGraph, filename: str | None = None, *, engine: str | None = None, timeout: float = 60.0
) -> bytes | str:
    """Draw ``graph``; return SVG text when ``filename`` is ``None``, else write the file and return its content.

    The format comes from the extension: ``.svg`` (returned as ``str``), ``.png``, ``.pdf``, ``.jpg``,
    ``.gif``, ``.ps``, ``.eps`` (``bytes``), or ``.dot``/``.gv`` (the DOT text, ``str``, no renderer needed).
    ``engine`` picks ``"dot"``, ``"pygraphviz"`` or ``"matplotlib"``; by default the first available one that
    supports the format (see the module docstring). ``timeout`` bounds the ``dot`` run in seconds.

    Raises ``ImportError`` naming what to install when no renderer can make the format, ``ValueError`` for an
    unknown extension or engine, and ``RuntimeError`` when ``dot`` fails or times out.
    """
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"render: engine must be one of {', '.join(ENGINES)} or None, got {engine!r}")
    fmt = "svg" if filename is None else file_format(filename)
    dot_text = to_dot(graph)
    if fmt in TEXT_FORMATS:
        assert filename is not None
        with open(filename, "w", encoding="utf-8") as stream:
            stream.write(dot_text)
        return dot_text
    data = _draw(graph, dot_text, fmt, engine, timeout)
    if filename is not None:
        with open(filename, "wb") as stream:
            stream.write(data)
    return data.decode("utf-8") if fmt == "svg" else data


def _draw(graph: TaskGraph, dot_text: str, fmt: str, engine: str | None, timeout: float) -> bytes:
    candidates = ENGINES if engine is None else (engine,)
    for candidate in candidates:
        if candidate == "dot":
            dot = _find_dot()
            if dot is not None:
                return _draw_with_dot(dot, dot_text, fmt, timeout)
        elif candidate == "pygraphviz":
            pygraphviz = _optional_module("pygraphviz")
            if pygraphviz is not None:
                data: bytes = pygraphviz.AGraph(string=dot_text).draw(format=fmt, prog="dot")
                return data
        elif fmt in MATPLOTLIB_FORMATS and _optional_module("matplotlib") is not None:
            return _draw_with_matplotlib(graph, fmt)
    if engine is not None:
        if engine == "matplotlib" and fmt not in MATPLOTLIB_FORMATS and _optional_module("matplotlib") is not None:
            raise ImportError(
                f"render: matplotlib cannot write {fmt!r}; for it install {_INSTALL['dot']} or {_INSTALL['pygraphviz']}"
            )
        raise ImportError(f"render: engine {engine!r} is not available; install {_INSTALL[engine]}")
    able = [_INSTALL[name] for name in ENGINES if name != "matplotlib" or fmt in MATPLOTLIB_FORMATS]
    raise ImportError(
        f"render: nothing here can draw a {fmt!r} picture; install one of: {'; '.join(able)}. "
        "A .dot filename writes the DOT text without any of them."
    )


def _draw_with_dot(dot: str, dot_text: str, fmt: str, timeout: float) -> bytes:
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"render: {dot} -T{fmt} did not finish within {timeout} s") from None
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"render: {dot} -T{fmt} failed with exit status {done.returncode}: {stderr}")
    return done.stdout


def _draw_with_matplotlib(graph: TaskGraph, fmt: str) -> bytes:
    """Layers top to bottom by ``topological_generations``, placed with ``multipartite_layout``; no pyplot, so no
    GUI backend and no global state is touched."""
    import networkx

    figure_module = importlib.import_module("matplotlib.figure")
    g = graph.to_networkx()
    width, height = 4.0, 2.0
    figure = figure_module.Figure(figsize=(width, height))
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    if g.number_of_nodes() == 0:
        ax.text(0.5, 0.5, "(empty graph)", ha="center", va="center")
    else:
        for depth, layer in enumerate(networkx.topological_generations(g)):
            for node in layer:
                g.nodes[node]["layer"] = depth
        for node, data in g.nodes(data=True):  # an input sits just above the node it feeds, as dot places it
            if data["kind"] == "input" and g.out_degree(node):
                data["layer"] = min(g.nodes[s]["layer"] for s in g.successors(node)) - 1
        generations: dict[int, list[Any]] = {}
        for node, data in g.nodes(data=True):
            generations.setdefault(data["layer"], []).append(node)
        pos = networkx.multipartite_layout(g, subset_key="layer", align="horizontal")
        pos = {node: (float(x), -float(y)) for node, (x, y) in pos.items()}  # first generation at the top
        _fewer_crossings(g, generations, pos)
        widest = max(len(layer) for layer in generations.values())
        figure.set_size_inches(max(width, 1.6 * widest), max(height, 1.1 * len(generations)))
        xs = [x for x, _ in pos.values()]
        ys = [y for _, y in pos.values()]
        pad_x = (max(xs) - min(xs)) * 0.15 + 0.2
        pad_y = (max(ys) - min(ys)) * 0.15 + 0.2
        ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
        ax.set_ylim(min(ys) - pad_y, max(ys) + pad_y)
        for source, target, data in g.edges(data=True):
            arrow = ax.annotate(
                "",
                xy=pos[target],
                xytext=pos[source],
                arrowprops={"arrowstyle": "-|>", "color": "0.35", "shrinkA": 14, "shrinkB": 14},
            )
            arrow.set_gid(f"edge_{dot_name(source)}_{dot_name(target)}")
            ports = [f"{sp}\u2192{tp}" if sp is not None else str(tp) for sp, tp in data["ports"] if tp is not None]
            if ports:
                (x0, y0), (x1, y1) = pos[source], pos[target]
                ax.text(
                    (x0 + x1) / 2,
                    (y0 + y1) / 2,
                    ", ".join(ports),
                    fontsize=7,
                    color="0.25",
                    ha="center",
                    va="center",
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                )
        for node, data in g.nodes(data=True):
            if data["kind"] == "input":
                box = {"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "0.3"}
                if data.get("external"):
                    box["linestyle"] = "--"
            elif isinstance(node, int):
                box = {"boxstyle": "square,pad=0.4", "facecolor": "#dde8f5", "edgecolor": "0.2"}
            else:
                box = {"boxstyle": "square,pad=0.4", "facecolor": "white", "edgecolor": "0.3", "linestyle": "--"}
            text = ax.text(*pos[node], str(data["label"]), ha="center", va="center", fontsize=9, bbox=box)
            text.set_gid(dot_name(node))
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt)
    return buffer.getvalue()


def _fewer_crossings(g: Any, layers: dict[int, list[Any]], pos: dict[Any, tuple[float, float]]) -> None:
    """Reorder the nodes inside each layer by the mean x of their neighbours (a few barycentre sweeps down and
    up), keeping the x positions that ``multipartite_layout`` gave the layer."""
    positions = {depth: sorted(pos[node][0] for node in nodes) for depth, nodes in layers.items()}
    for sweep in range(4):
        neighbours = g.predecessors if sweep % 2 == 0 else g.successors
        for depth in sorted(layers, reverse=sweep % 2 == 1):

            def barycentre(node: Any, neighbours: Any = neighbours) -> float:
                xs = [pos[other][0] for other in neighbours(node)]
                return sum(xs) / len(xs) if xs else pos[node][0]

            layers[depth].sort(key=barycentre)
            for node, x in zip(layers[depth], positions[depth], strict=True):
                pos[node] = (x, pos[node][1])


class GraphPicture:
    """A picture of a graph that Jupyter shows inline (``_repr_svg_``); rendered on first display, then kept."""

    def __init__(self, graph: TaskGraph, *, engine: str | None = None) -> None:
        self.graph = graph
        self.engine = engine
        self._svg: str | None = None

    def _repr_svg_(self) -> str:
        if self._svg is None:
            svg = render(self.graph, None, engine=self.engine)
            assert isinstance(svg, str)
            self._svg = svg
        return self._svg

    @property
    def dot(self) -> str:
        """The DOT text of the graph."""
        return to_dot(self.graph)

    def save(self, filename: str) -> bytes | str:
        """Write the picture to ``filename`` (format from the extension); see :func:`render`."""
        return render(self.graph, filename, engine=self.engine)

    def __repr__(self) -> str:
        return f"<GraphPicture of {self.graph!r}>"

"""render and GraphPicture with each renderer that is installed, and the errors when none is."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from xl_graph import GraphPicture, TaskGraph, render, split_future, to_dot
from xl_graph import draw as draw_module

HAS_DOT = shutil.which("dot") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_PYGRAPHVIZ = importlib.util.find_spec("pygraphviz") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="the graphviz dot binary is not installed (apt install graphviz)")
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
needs_pygraphviz = pytest.mark.skipif(not HAS_PYGRAPHVIZ, reason="pygraphviz is not installed")

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "jpg": b"\xff\xd8\xff", "gif": b"GIF8", "ps": b"%!PS"}


def load(path: str) -> Any:
    return path


def fit(data: Any, lower: float = 0.0) -> Any:
    return data


def summarize(*parts: Any, **options: Any) -> Any:
    return parts


def workflow() -> TaskGraph:
    """Four tasks: load -> fit (twice, one via a split result) -> summarize (with a list of futures)."""
    loaded: Future[Any] = Future()
    fitted: Future[Any] = Future()
    refitted: Future[Any] = Future()
    first, _ = split_future(loaded, 2)
    graph = TaskGraph()
    graph.add_task(0, load, ("data.csv",), {}, {})
    graph.add_task(1, fit, (loaded,), {"lower": 0.5}, {id(loaded): 0})
    graph.add_task(2, fit, (first,), {}, {id(loaded): 0})
    graph.add_task(3, summarize, ([fitted, refitted],), {"title": "a <b> & 'c'"}, {id(fitted): 1, id(refitted): 2})
    return graph


def task_ids_in_svg(svg: str) -> list[str]:
    return sorted(set(re.findall(r'id="(task_\d+)"', svg)))


@pytest.fixture
def no_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend that neither dot, nor pygraphviz, nor matplotlib is installed."""
    monkeypatch.setattr(draw_module, "_find_dot", lambda: None)
    monkeypatch.setattr(draw_module, "_optional_module", lambda name: None)


@pytest.fixture
def only_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide dot and pygraphviz, so the automatic choice falls back to matplotlib (when it is installed)."""
    real = draw_module._optional_module
    monkeypatch.setattr(draw_module, "_find_dot", lambda: None)
    monkeypatch.setattr(draw_module, "_optional_module", lambda name: None if name == "pygraphviz" else real(name))


@pytest.mark.parametrize("extension", ["dot", "gv"])
def test_dot_files_need_no_renderer(tmp_path: Path, extension: str, no_renderer: None) -> None:
    graph = workflow()
    path = tmp_path / f"graph.{extension}"
    text = render(graph, str(path))
    assert text == to_dot(graph) == path.read_text(encoding="utf-8")


@needs_dot
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf", "jpg", "gif", "ps"])
def test_dot_binary_writes_each_format(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"graph.{fmt.upper()}"  # the extension is case-insensitive
    content = render(workflow(), str(path), engine="dot")
    data = path.read_bytes()
    if fmt == "svg":
        assert isinstance(content, str) and content.encode() == data
        assert "<svg" in content
        assert task_ids_in_svg(content) == ["task_0", "task_1", "task_2", "task_3"]
    else:
        assert content == data
        assert data.startswith(MAGIC[fmt])


@needs_dot
def test_svg_text_without_filename_is_the_dot_picture() -> None:
    svg = render(workflow())
    assert isinstance(svg, str) and "<svg" in svg and "graphviz" in svg.lower()
    assert task_ids_in_svg(svg) == ["task_0", "task_1", "task_2", "task_3"]
    for label in ("load", "fit", "summarize", "get_list"):
        assert f">{label}</text>" in svg


@needs_dot
def test_a_failing_dot_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "dot"
    script.write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(draw_module, "_find_dot", lambda: str(script))
    with pytest.raises(RuntimeError, match="exit status 3: Error: syntax error in line 1"):
        render(workflow(), str(tmp_path / "graph.png"))
    assert not (tmp_path / "graph.png").exists()


def test_a_hanging_dot_times_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "dot"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(draw_module, "_find_dot", lambda: str(script))
    with pytest.raises(RuntimeError, match=r"did not finish within 0.5 s"):
        render(workflow(), None, timeout=0.5)


@needs_matplotlib
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_matplotlib_writes_each_format(tmp_path: Path, fmt: str, only_matplotlib: None) -> None:
    path = tmp_path / f"graph.{fmt}"
    content = render(workflow(), str(path))
    data = path.read_bytes()
    if fmt == "svg":
        assert isinstance(content, str) and "<svg" in content and "matplotlib" in content.lower()
        assert task_ids_in_svg(content) == ["task_0", "task_1", "task_2", "task_3"]
    else:
        assert data.startswith(MAGIC[fmt])


@needs_matplotlib
def test_matplotlib_draws_an_empty_graph(only_matplotlib: None) -> None:
    assert "<svg" in render(TaskGraph(), None, engine="matplotlib")


@needs_matplotlib
def test_matplotlib_cannot_write_gif(only_matplotlib: None, tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="apt install graphviz"):
        render(workflow(), str(tmp_path / "graph.gif"), engine="matplotlib")


@needs_pygraphviz
def test_pygraphviz_writes_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(draw_module, "_find_dot", lambda: None)
    path = tmp_path / "graph.png"
    render(workflow(), str(path))
    assert path.read_bytes().startswith(MAGIC["png"])


def test_without_dot_the_fallback_is_matplotlib_or_a_clear_import_error(only_matplotlib: None) -> None:
    if HAS_MATPLOTLIB:
        svg = render(workflow())
        assert isinstance(svg, str) and "matplotlib" in svg.lower()
    else:
        with pytest.raises(ImportError, match="pip install matplotlib"):
            render(workflow())


def test_no_renderer_says_what_to_install(no_renderer: None, tmp_path: Path) -> None:
    with pytest.raises(ImportError) as info:
        render(workflow(), str(tmp_path / "graph.png"))
    message = str(info.value)
    for hint in ("apt install graphviz", "pip install pygraphviz", "pip install matplotlib", ".dot"):
        assert hint in message
    with pytest.raises(ImportError) as info:
        render(workflow(), str(tmp_path / "graph.gif"))
    assert "pip install matplotlib" not in str(info.value)  # matplotlib cannot write gif anyway
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("engine", "hint"),
    [
        ("dot", "apt install graphviz"),
        ("pygraphviz", "pip install pygraphviz"),
        ("matplotlib", "pip install matplotlib"),
    ],
)
def test_a_missing_engine_says_what_to_install(no_renderer: None, engine: str, hint: str) -> None:
    with pytest.raises(ImportError, match=f"engine {engine!r} is not available; install .*{hint}"):
        render(workflow(), engine=engine)


def test_bad_extension_and_engine_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot tell the picture format of '.*graph.bmp'"):
        render(workflow(), str(tmp_path / "graph.bmp"))
    with pytest.raises(ValueError, match="cannot tell the picture format"):
        render(workflow(), str(tmp_path / "graph"))
    with pytest.raises(ValueError, match="engine must be one of"):
        render(workflow(), engine="neato")


def test_graph_picture_renders_once_for_jupyter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(draw_module, "_draw", lambda *args: calls.append(args) or b"<svg>picture</svg>")
    picture = GraphPicture(workflow())
    assert calls == []  # lazy
    assert picture._repr_svg_() == "<svg>picture</svg>"
    assert picture._repr_svg_() == "<svg>picture</svg>"
    assert len(calls) == 1
    assert picture.dot == to_dot(picture.graph)
    assert picture.save(str(tmp_path / "graph.dot")) == picture.dot
    assert "GraphPicture" in repr(picture)


@pytest.mark.skipif(not (HAS_DOT or HAS_MATPLOTLIB or HAS_PYGRAPHVIZ), reason="no renderer installed")
def test_graph_picture_is_real_svg() -> None:
    svg = GraphPicture(workflow())._repr_svg_()
    assert "<svg" in svg
    assert task_ids_in_svg(svg) == ["task_0", "task_1", "task_2", "task_3"]


def test_render_leaves_the_working_directory_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(draw_module, "_draw", lambda *args: b"<svg/>")
    render(workflow())
    assert os.listdir(tmp_path) == []

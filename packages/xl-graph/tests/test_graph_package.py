"""The public names, the version, and what importing xl_graph costs."""

import subprocess
import sys

import xl_graph


def test_public_names() -> None:
    assert set(xl_graph.__all__) == {
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
    }
    for name in xl_graph.__all__:
        assert getattr(xl_graph, name) is not None
        assert name in dir(xl_graph)
    assert xl_graph.__version__ == "0.1.0"


def test_unknown_name() -> None:
    try:
        xl_graph.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def _imported_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'xl_serial', 'xl_comm', 'xl_spawn', 'xl_cache', 'executorlib', 'zmq', 'cloudpickle', 'h5py', "
        "'networkx', 'matplotlib', 'pygraphviz', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return eval(out.stdout)  # type: ignore[no-any-return]


def test_futures_cost_no_networkx_and_no_project_package() -> None:
    assert _imported_after("from xl_graph import FutureSelector, find_futures, substitute, split_future") == []
    assert _imported_after("import xl_graph") == []


def test_the_graph_imports_networkx_only_when_asked() -> None:
    assert _imported_after("from xl_graph import TaskGraph, to_dot, to_workflow_json, render") == []
    assert _imported_after(
        "from xl_graph import TaskGraph; g = TaskGraph(); g.add_task(0, len, ([],), {}, {}); g.to_networkx()"
    ) == ["networkx"]

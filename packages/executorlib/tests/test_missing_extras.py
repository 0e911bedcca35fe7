"""A feature whose package is missing raises an ImportError that names the extra of executorlib bringing it, at
construction or at the call that needs it (executorlib 1.x's extra names: cluster, mpi, graph).

The packages are made unimportable for the test by a ``None`` entry in ``sys.modules``, which makes both
``import`` and ``importlib.util.find_spec`` report them missing, as in an environment without them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from executorlib.errors import MissingExtraError, ResourceDictError


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_the_cluster_executors_built_in_job_scripts_need_no_jinja2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from executorlib import SlurmClusterExecutor

    hide(monkeypatch, "jinja2")
    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        script = exe.dry_run(sum, [1, 2], resource_dict={"cores": 2, "run_time_max": 120})
    assert "#SBATCH --ntasks=2" in script and "#SBATCH --time=2" in script


def test_a_submission_template_without_jinja2_names_the_cluster_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from executorlib import SlurmClusterExecutor

    hide(monkeypatch, "jinja2")
    template = {"submission_template": "#!/bin/bash\n{{ command }}\n"}
    exe = SlurmClusterExecutor(cache_directory=str(tmp_path / "cache"))
    try:
        with pytest.raises(ImportError, match=r'jinja2.*pip install "executorlib\[cluster\]"') as raised:
            exe.submit(sum, [1, 2], resource_dict=template)
    finally:
        exe.shutdown(wait=True)
    assert isinstance(raised.value, MissingExtraError)
    assert not list((tmp_path / "cache").glob("*_i.h5"))  # refused before any task file is written
    with pytest.raises(MissingExtraError, match=r"executorlib\[cluster\]"):  # a pool: at construction
        SlurmClusterExecutor(
            max_workers=1, cache_directory=str(tmp_path), block_allocation=True, resource_dict=template
        )


def test_pysqa_config_directory_without_pysqa_names_the_cluster_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from executorlib import SlurmClusterExecutor

    hide(monkeypatch, "pysqa")
    with pytest.raises(ImportError, match=r'pysqa_config_directory needs pysqa.*"executorlib\[cluster\]"'):
        SlurmClusterExecutor(cache_directory=str(tmp_path / "cache"), pysqa_config_directory=str(tmp_path))


def test_graph_mode_needs_no_jinja2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from executorlib import SlurmClusterExecutor

    hide(monkeypatch, "jinja2")
    workflow = tmp_path / "workflow.json"
    with SlurmClusterExecutor(cache_directory=str(tmp_path), export_workflow_filename=str(workflow)) as exe:
        assert exe.submit(sum, [1, 2]).result(timeout=10) is None  # recorded, not run
    assert workflow.exists()


def test_an_mpi_task_without_mpi4py_names_the_mpi_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from executorlib import SingleNodeExecutor

    hide(monkeypatch, "mpi4py")
    with SingleNodeExecutor(max_cores=2) as exe:
        with pytest.raises(ImportError, match=r"executorlib\[mpi\]") as raised:
            exe.submit(sum, [1, 2], resource_dict={"cores": 2})
        assert isinstance(raised.value, ResourceDictError)  # as every request the executor refuses
        assert exe.submit(sum, [1, 2]).result(timeout=60) == 3  # the executor still works


def test_a_graph_picture_without_any_renderer_names_the_graph_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from executorlib import SingleNodeExecutor

    picture = tmp_path / "graph.png"
    exe = SingleNodeExecutor(plot_dependency_graph_filename=str(picture))
    exe.submit(sum, [1, 2])
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz dot
    hide(monkeypatch, "pygraphviz", "matplotlib")
    with pytest.raises(ImportError, match=r'"executorlib\[graph\]" brings pygraphviz'):
        exe.shutdown()
    assert not picture.exists()

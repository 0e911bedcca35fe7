"""Tests of scripts/check_workspace.py: each check reports the specific problem it exists for, and the repo passes.

Most tests feed the pure check functions a small in-memory workspace that is known to be consistent
(``good_workspace``), break one thing, and look for that one problem. A few tests write a miniature repository
into ``tmp_path`` to exercise the file-reading layer, including the offline recipe render.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "check_workspace.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_workspace", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


cw = _load_script()
Json = dict[str, Any]
SCHEMA: Json = json.loads((REPO_ROOT / "schemas" / cw.PIXI_SCHEMA_FILE).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# an in-memory workspace that passes every check


def make_pyproject(
    name: str, version: str, deps: list[str], extras: dict[str, list[str]] | None = None, module: str | None = None
) -> Json:
    module = module or name.replace("-", "_")
    return {
        "build-system": {"requires": ["hatchling>=1.24"], "build-backend": "hatchling.build"},
        "project": {
            "name": name,
            "version": version,
            "license": "BSD-3-Clause",
            "requires-python": ">=3.10",
            "dependencies": list(deps),
            "optional-dependencies": dict(extras or {}),
        },
        "tool": {"hatch": {"build": {"targets": {"wheel": {"packages": [f"src/{module}"]}}}}},
    }


def make_recipe(name: str, version: str, run: list[str], module: str | None = None) -> Json:
    """Shaped like ``Stage1Recipe.to_dict()`` of our recipes, plus ``schema_version``."""
    return {
        "schema_version": 1,
        "package": {"name": name, "version": version},
        "build": {"number": 0, "noarch": "python"},
        "requirements": {"host": ["python 3.10.*", "hatchling >=1.24", "pip"], "run": ["python >=3.10", *run]},
        "tests": [{"python": {"imports": [module or name.replace("-", "_")], "python_version": "3.10.*"}}],
        "about": {"license": "BSD-3-Clause", "license_file": ["LICENSE"]},
    }


def package_files(module: str) -> frozenset[str]:
    return frozenset(
        {
            "pyproject.toml",
            "README.md",
            "CHANGELOG.md",
            "LICENSE",
            f"src/{module}/__init__.py",
            f"src/{module}/py.typed",
            "tests/test_something.py",
            "recipe/recipe.yaml",
        }
    )


def good_packages() -> tuple[Any, ...]:
    serial = cw.Package(
        "xl-serial",
        make_pyproject("xl-serial", "0.1.0", ["cloudpickle>=3.0,<4"]),
        package_files("xl_serial"),
        make_recipe("xl-serial", "0.1.0", ["cloudpickle >=3.0,<4"]),
    )
    comm = cw.Package(
        "xl-comm",
        make_pyproject("xl-comm", "0.1.0", ["xl-serial>=0.1,<0.2", "pyzmq>=25,<28"], {"mpi": ["mpi4py>=3.1"]}),
        package_files("xl_comm"),
        make_recipe("xl-comm", "0.1.0", ["xl-serial >=0.1,<0.2", "pyzmq >=25,<28"]),
    )
    meta = cw.Package(
        "executorlib",
        make_pyproject("executorlib", "2.0.0a1", ["xl-serial>=0.1,<0.2", "xl-comm>=0.1,<0.2"]),
        package_files("executorlib"),
        make_recipe("executorlib", "2.0.0a1", ["xl-serial >=0.1,<0.2", "xl-comm >=0.1,<0.2"]),
    )
    return (serial, comm, meta)


def good_root() -> Json:
    return {
        "tool": {
            "uv": {
                "workspace": {"members": ["packages/*"]},
                "sources": {n: {"workspace": True} for n in ("xl-serial", "xl-comm", "executorlib")},
            }
        },
        "dependency-groups": {"dev": ["xl-serial", "xl-comm", "executorlib", "pytest>=8"]},
    }


def good_pixi() -> Json:
    return {
        "$schema": cw.PIXI_SCHEMA_URL,
        "workspace": {"name": "ws", "channels": ["conda-forge"], "platforms": ["linux-64", "osx-arm64"]},
        "dependencies": {"python": ">=3.10", "cloudpickle": ">=3.0,<4", "pyzmq": ">=25,<28"},
        "pypi-dependencies": {
            name: {"path": f"packages/{name}", "editable": True} for name in ("xl-serial", "xl-comm", "executorlib")
        },
        "feature": {
            "test": {"dependencies": {"pytest": "*"}, "tasks": {"test": "bash scripts/test.sh"}},
            "mpich": {"dependencies": {"mpich": "*", "mpi4py": ">=3.1"}},
            "flux": {"platforms": ["linux-64"], "dependencies": {"flux-core": "*"}},
            "lint": {"dependencies": {"ruff": "*"}},
        },
        "environments": {
            "default": {"features": ["test"]},
            "mpich": ["test", "mpich"],
            "flux": {"features": ["test", "flux"]},
            "lint": {"features": ["lint"], "no-default-feature": True},
        },
    }


def good_workspace() -> Any:
    return cw.Workspace(good_root(), good_packages(), good_pixi(), SCHEMA)


def replace_package(workspace: Any, index: int, **changes: Any) -> Any:
    packages = list(workspace.packages)
    packages[index] = dataclasses.replace(packages[index], **changes)
    return dataclasses.replace(workspace, packages=tuple(packages))


def with_pixi(change: Any) -> list[str]:
    """Problems of the good workspace after ``change(manifest)`` edits a copy of its pixi manifest in place."""
    manifest = copy.deepcopy(good_pixi())
    change(manifest)
    problems: list[str] = cw.check_workspace(dataclasses.replace(good_workspace(), pixi=manifest))
    return problems


def has(problems: list[str], *fragments: str) -> bool:
    return any(all(fragment in problem for fragment in fragments) for problem in problems)


def test_the_fixture_workspace_is_consistent() -> None:
    assert cw.check_workspace(good_workspace()) == []


# ---------------------------------------------------------------------------------------------------------------
# files, versions


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        ("README.md", "missing README.md"),
        ("CHANGELOG.md", "missing CHANGELOG.md"),
        ("LICENSE", "missing LICENSE"),
        ("src/xl_comm/py.typed", "missing src/xl_comm/py.typed"),
        ("tests/test_something.py", "tests/ has no test file"),
        ("recipe/recipe.yaml", "missing recipe/recipe.yaml"),
    ],
)
def test_a_missing_file_is_reported(removed: str, expected: str) -> None:
    workspace = good_workspace()
    files = workspace.packages[1].files - {removed}
    problems = cw.check_workspace(replace_package(workspace, 1, files=files))
    assert has(problems, "packages/xl-comm", expected), problems


def test_test_files_count_in_subdirectories_and_helpers_do_not() -> None:
    package = good_packages()[0]
    nested = dataclasses.replace(package, files=package.files - {"tests/test_something.py"} | {"tests/unit/test_a.py"})
    assert cw.check_package_files(nested) == []
    helper_only = dataclasses.replace(package, files=package.files - {"tests/test_something.py"} | {"tests/util.py"})
    assert has(cw.check_package_files(helper_only), "has no test file")


def test_py_typed_follows_the_hatch_wheel_package() -> None:
    package = good_packages()[0]
    pyproject = make_pyproject("xl-serial", "0.1.0", ["cloudpickle>=3.0,<4"], module="serial_impl")
    problems = cw.check_package_files(dataclasses.replace(package, pyproject=pyproject))
    assert has(problems, "missing src/serial_impl/py.typed")


def test_a_dynamic_or_missing_version_is_reported() -> None:
    workspace = good_workspace()
    pyproject = copy.deepcopy(workspace.packages[0].pyproject)
    del pyproject["project"]["version"]
    pyproject["project"]["dynamic"] = ["version"]
    problems = cw.check_workspace(replace_package(workspace, 0, pyproject=pyproject))
    assert has(problems, "packages/xl-serial/pyproject.toml", "version is dynamic")
    assert has(problems, "packages/xl-serial/pyproject.toml", "[project].version is missing")


def test_an_invalid_version_is_reported() -> None:
    workspace = good_workspace()
    pyproject = copy.deepcopy(workspace.packages[0].pyproject)
    pyproject["project"]["version"] = "one point oh"
    problems = cw.check_static_version(dataclasses.replace(workspace.packages[0], pyproject=pyproject))
    assert has(problems, "'one point oh' is not a valid PEP 440 version")


# ---------------------------------------------------------------------------------------------------------------
# recipes

SIBLINGS = ["xl-serial", "xl-comm", "executorlib"]


def recipe_problems(index: int, edit: Any) -> list[str]:
    package = good_packages()[index]
    recipe = copy.deepcopy(package.recipe)
    edit(recipe)
    problems: list[str] = cw.check_recipe(dataclasses.replace(package, recipe=recipe), SIBLINGS)
    return problems


def test_recipe_version_mismatch_is_reported() -> None:
    problems = recipe_problems(0, lambda r: r["package"].update(version="0.2.0"))
    assert has(problems, "packages/xl-serial/recipe/recipe.yaml", "'0.2.0' differs from pyproject version '0.1.0'")


def test_recipe_name_mismatch_is_reported() -> None:
    problems = recipe_problems(0, lambda r: r["package"].update(name="xl-serialize"))
    assert has(problems, "package name 'xl-serialize' differs from pyproject name 'xl-serial'")


def test_recipe_run_requirement_with_another_range_is_reported() -> None:
    problems = recipe_problems(
        1, lambda r: r["requirements"].update(run=["python >=3.10", "xl-serial >=0.1,<0.2", "pyzmq >=26"])
    )
    assert has(problems, "run requirement pyzmq is '>=26' but pyproject.toml says '<28,>=25'"), problems


def test_recipe_missing_and_extra_run_requirements_are_reported() -> None:
    problems = recipe_problems(
        1, lambda r: r["requirements"].update(run=["python >=3.10", "pyzmq >=25,<28", "mpi4py >=3.1"])
    )
    assert has(problems, "run requirements lack 'xl-serial", "<0.2,>=0.1")
    # mpi4py is an optional extra: it must not be a run requirement
    assert has(problems, "run requirement 'mpi4py' is not a dependency in pyproject.toml")


def test_recipe_python_floor_must_match_requires_python() -> None:
    problems = recipe_problems(0, lambda r: r["requirements"].update(run=["python >=3.11", "cloudpickle >=3.0,<4"]))
    assert has(problems, "run requirement python is '>=3.11' but requires-python is '>=3.10'")


def test_recipe_equal_ranges_written_differently_agree() -> None:
    problems = recipe_problems(0, lambda r: r["requirements"].update(run=["python >=3.10.0", "cloudpickle <4.0,>=3"]))
    assert problems == []


def test_recipe_uncomparable_conda_spec_is_reported() -> None:
    problems = recipe_problems(0, lambda r: r["requirements"].update(run=["python >=3.10", "cloudpickle >=3|<2"]))
    assert has(problems, "'cloudpickle >=3|<2' uses a conda version spec that cannot be compared")


def test_recipe_structure_problems_are_reported() -> None:
    def edit(recipe: Json) -> None:
        recipe["schema_version"] = None
        recipe["build"]["noarch"] = None
        recipe["tests"] = [{"python": {"imports": ["something_else"], "pip_check": False}}]
        recipe["about"]["license"] = "MIT"

    problems = recipe_problems(0, edit)
    assert has(problems, "schema_version must be 1")
    assert has(problems, "build.noarch must be 'python'")
    assert has(problems, "no python test imports 'xl_serial'")
    assert has(problems, "pip_check must stay enabled")
    assert has(problems, "about.license 'MIT' differs from pyproject 'BSD-3-Clause'")


def test_a_recipe_that_does_not_render_is_reported() -> None:
    workspace = good_workspace()
    broken = replace_package(workspace, 2, recipe=None, recipe_error="PyRecipeParseError: unknown top-level field")
    assert has(cw.check_workspace(broken), "packages/executorlib/recipe/recipe.yaml: does not render", "unknown top")


def test_an_unmapped_dependency_is_reported() -> None:
    package = good_packages()[0]
    pyproject = make_pyproject("xl-serial", "0.1.0", ["cloudpickle>=3.0,<4", "left-pad>=1"])
    problems = cw.check_recipe(dataclasses.replace(package, pyproject=pyproject), SIBLINGS)
    assert has(problems, "no conda-forge name known for dependency 'left-pad'")


def test_pypi_names_map_to_conda_names() -> None:
    package = good_packages()[0]
    pyproject = make_pyproject("xl-serial", "0.1.0", ["cloudpickle>=3.0,<4", "matplotlib>=3"])
    recipe = make_recipe("xl-serial", "0.1.0", ["cloudpickle >=3.0,<4", "matplotlib-base >=3"])
    assert cw.check_recipe(dataclasses.replace(package, pyproject=pyproject, recipe=recipe), SIBLINGS) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pyzmq >=25,<28", ("pyzmq", ">=25,<28")),
        ("pyzmq >=25, <28", ("pyzmq", ">=25,<28")),
        ("python", ("python", "")),
        ("xl-serial>=0.1", ("xl-serial", ">=0.1")),
    ],
)
def test_parse_conda_spec(spec: str, expected: tuple[str, str]) -> None:
    assert cw.parse_conda_spec(spec) == expected


# ---------------------------------------------------------------------------------------------------------------
# pins, sources, forbidden names

versions = st.builds(lambda *parts: ".".join(map(str, parts)), *(st.integers(0, 30) for _ in range(3)))


@given(version=versions)
def test_a_compatible_range_admits_the_current_version(version: str) -> None:
    major, minor, _ = (int(p) for p in version.split("."))
    pin = f"xl-serial>={major}.{minor},<{major}.{minor + 1}"
    pyprojects = {"packages/x/pyproject.toml": make_pyproject("x", "1.0", [pin])}
    assert cw.check_sibling_pins(pyprojects, {"xl-serial": version}) == []


@given(version=versions, operator=st.sampled_from(["<", ">", "!="]))
def test_a_range_that_excludes_the_current_version_is_reported(version: str, operator: str) -> None:
    pin = f"xl-serial{operator}{version}"
    pyprojects = {"packages/x/pyproject.toml": make_pyproject("x", "1.0", [pin])}
    problems = cw.check_sibling_pins(pyprojects, {"xl-serial": version})
    assert has(
        problems, "packages/x/pyproject.toml [project].dependencies", f"excludes the workspace's xl-serial {version}"
    )


@given(current=versions, other=versions)
def test_recipe_version_is_reported_exactly_when_it_differs(current: str, other: str) -> None:
    package = good_packages()[0]
    pyproject = make_pyproject("xl-serial", current, ["cloudpickle>=3.0,<4"])
    recipe = make_recipe("xl-serial", other, ["cloudpickle >=3.0,<4"])
    problems = cw.check_recipe(dataclasses.replace(package, pyproject=pyproject, recipe=recipe), SIBLINGS)
    assert has(problems, "differs from pyproject version") == (current != other)


def test_a_bad_pin_in_the_real_shape_is_reported() -> None:
    workspace = good_workspace()
    pyproject = copy.deepcopy(workspace.packages[2].pyproject)
    pyproject["project"]["dependencies"] = ["xl-serial>=0.2,<0.3", "xl-comm>=0.1,<0.2"]
    problems = cw.check_workspace(replace_package(workspace, 2, pyproject=pyproject))
    assert has(problems, "packages/executorlib/pyproject.toml", "excludes the workspace's xl-serial 0.1.0")


def test_pins_in_extras_count_and_prereleases_are_admitted() -> None:
    pyprojects = {"packages/x/pyproject.toml": make_pyproject("x", "1.0", [], {"all": ["executorlib>=3"]})}
    problems = cw.check_sibling_pins(pyprojects, {"executorlib": "2.0.0a1"})
    assert has(problems, "[project.optional-dependencies].all", "excludes the workspace's executorlib 2.0.0a1")
    pyprojects = {"packages/x/pyproject.toml": make_pyproject("x", "1.0", ["executorlib>=2.0.0a1,<3"])}
    assert cw.check_sibling_pins(pyprojects, {"executorlib": "2.0.0a1"}) == []


def test_an_unpinned_sibling_in_a_package_is_reported_but_not_in_the_root() -> None:
    pyprojects = {
        "pyproject.toml": good_root(),
        "packages/x/pyproject.toml": make_pyproject("x", "1.0", ["xl-serial"]),
    }
    problems = cw.check_sibling_pins(pyprojects, {"xl-serial": "0.1.0"})
    assert len(problems) == 1
    assert has(problems, "packages/x/pyproject.toml", "'xl-serial' has no version range", "xl-serial>=0.1,<0.2")


def test_an_invalid_requirement_is_reported() -> None:
    pyprojects = {"packages/x/pyproject.toml": make_pyproject("x", "1.0", ["xl-serial >= = 1"])}
    assert has(
        cw.check_sibling_pins(pyprojects, {"xl-serial": "0.1.0"}), "'xl-serial >= = 1' is not a valid requirement"
    )


def test_a_sibling_without_a_workspace_source_is_reported() -> None:
    workspace = good_workspace()
    root = good_root()
    del root["tool"]["uv"]["sources"]["xl-comm"]
    problems = cw.check_workspace(dataclasses.replace(workspace, root_pyproject=root))
    assert has(problems, "[tool.uv.sources] lacks xl-comm = { workspace = true }")
    root["tool"]["uv"]["sources"]["xl-comm"] = {"path": "packages/xl-comm"}
    problems = cw.check_workspace(dataclasses.replace(workspace, root_pyproject=root))
    assert has(problems, "[tool.uv.sources] lacks xl-comm = { workspace = true }")


def test_a_package_outside_the_workspace_members_is_reported() -> None:
    root = good_root()
    root["tool"]["uv"]["workspace"]["members"] = ["packages/xl-*"]
    problems = cw.check_workspace_sources(root, good_packages())
    assert problems == ["pyproject.toml: [tool.uv.workspace].members does not include packages/executorlib"]


@pytest.mark.parametrize("name", ["flux-core", "flux", "pixi", "Flux_Core"])
def test_forbidden_pypi_names_are_reported_in_every_dependency_list(name: str) -> None:
    for where, pyproject in [
        ("[project].dependencies", make_pyproject("x", "1.0", [f"{name}>=1"])),
        ("[project.optional-dependencies].flux", make_pyproject("x", "1.0", [], {"flux": [name]})),
        ("[dependency-groups].dev", {"dependency-groups": {"dev": [name, {"include-group": "lint"}]}}),
        ("[build-system].requires", {"build-system": {"requires": [name]}}),
    ]:
        problems = cw.check_forbidden_dependencies({"some/pyproject.toml": pyproject})
        assert has(problems, "some/pyproject.toml", where, "must not be a PyPI dependency"), (where, problems)


def test_flux_python_is_not_forbidden() -> None:
    pyproject = make_pyproject("x", "1.0", [], {"flux": ["flux-python"]})
    assert cw.check_forbidden_dependencies({"p": pyproject}) == []


# ---------------------------------------------------------------------------------------------------------------
# pixi.toml


def test_a_misspelled_pixi_key_fails_the_schema() -> None:
    problems = with_pixi(lambda m: m["workspace"].update(platform=["linux-64"]))
    assert has(problems, "pixi.toml: workspace:", "'platform' was unexpected")


def test_a_wrongly_typed_pixi_value_fails_the_schema() -> None:
    problems = with_pixi(lambda m: m["workspace"].update(channels="conda-forge"))
    assert has(problems, "pixi.toml: workspace.channels:")


def test_the_schema_url_must_match_the_schema_copy() -> None:
    problems = with_pixi(lambda m: m.update({"$schema": "https://pixi.sh/v0.59.0/schema/manifest/schema.json"}))
    assert has(problems, '"$schema"', "v0.59.0", cw.PIXI_SCHEMA_FILE)


def test_an_unknown_feature_is_reported() -> None:
    problems = with_pixi(lambda m: m["environments"].update(openmpi=["test", "openmpi"]))
    assert has(problems, "environment 'openmpi' uses feature 'openmpi', which is not defined")


def test_an_unused_feature_is_reported() -> None:
    problems = with_pixi(lambda m: m["feature"].update(docs={"dependencies": {"sphinx": "*"}}))
    assert has(problems, "feature 'docs' is defined but no environment uses it")


def test_a_bad_environment_name_is_reported() -> None:
    # the schema only rejects such names through patternProperties; the consistency check names the rule
    problems = with_pixi(lambda m: m["environments"].update(Flux_Env=["test"]))
    assert has(problems, "environment name 'Flux_Env' must match")


def test_feature_platforms_must_be_workspace_platforms() -> None:
    problems = with_pixi(lambda m: m["feature"]["flux"].update(platforms=["linux-64", "linux-aarch64"]))
    assert has(problems, "feature 'flux' lists platforms ['linux-aarch64'] that [workspace].platforms lacks")


def test_every_package_must_be_an_editable_pypi_dependency() -> None:
    problems = with_pixi(lambda m: m["pypi-dependencies"].pop("xl-comm"))
    assert has(problems, '[pypi-dependencies] lacks xl-comm = { path = "packages/xl-comm", editable = true }')
    problems = with_pixi(lambda m: m["pypi-dependencies"]["xl-comm"].update(editable=False))
    assert has(problems, "[pypi-dependencies].xl-comm must set editable = true")
    problems = with_pixi(lambda m: m["pypi-dependencies"]["xl-comm"].update(path="packages/comm"))
    assert has(problems, "[pypi-dependencies].xl-comm has path 'packages/comm', expected 'packages/xl-comm'")


def test_a_pypi_path_to_a_package_that_does_not_exist_is_reported() -> None:
    problems = with_pixi(lambda m: m["pypi-dependencies"].update({"xl-cache": {"path": "packages/xl-cache"}}))
    assert has(problems, "[pypi-dependencies].xl-cache points at 'packages/xl-cache', which is not a package")


def test_a_dotted_path_is_accepted() -> None:
    assert with_pixi(lambda m: m["pypi-dependencies"]["xl-comm"].update(path="./packages/xl-comm/")) == []


def test_runtime_dependencies_need_conda_counterparts() -> None:
    problems = with_pixi(lambda m: m["dependencies"].pop("pyzmq"))
    assert has(problems, "packages/xl-comm dependencies needs pyzmq; add conda package 'pyzmq' to [dependencies]")
    problems = with_pixi(lambda m: m["feature"]["mpich"]["dependencies"].pop("mpi4py"))
    assert has(problems, "packages/xl-comm extra 'mpi' needs mpi4py")


def test_the_project_table_is_accepted_in_place_of_workspace() -> None:
    assert with_pixi(lambda m: m.update(project=m.pop("workspace"))) == []


# ---------------------------------------------------------------------------------------------------------------
# the file layer, on a miniature repository in tmp_path

RECIPE = """\
schema_version: 1

context:
  name: {name}
  version: "{version}"
  python_min: "3.10"

package:
  name: ${{{{ name }}}}
  version: ${{{{ version }}}}

source:
  path: ../

build:
  number: 0
  noarch: python
  script: ${{{{ PYTHON }}}} -m pip install . -vv --no-deps --no-build-isolation

requirements:
  host:
    - python ${{{{ python_min }}}}.*
    - hatchling
    - pip
  run:
    - python >=${{{{ python_min }}}}
    - cloudpickle >=3.0,<4

tests:
  - python:
      imports:
        - {module}
      pip_check: true

about:
  license: BSD-3-Clause
  license_file: LICENSE
"""

PYPROJECT = """\
[project]
name = "{name}"
version = "{version}"
license = "BSD-3-Clause"
requires-python = ">=3.10"
dependencies = ["cloudpickle>=3.0,<4"]
"""

ROOT_PYPROJECT = """\
[tool.uv.workspace]
members = ["packages/*"]
"""

PIXI = """\
"$schema" = "{url}"

[workspace]
name = "mini"
channels = ["conda-forge"]
platforms = ["linux-64"]

[dependencies]
python = ">=3.10"
cloudpickle = ">=3.0,<4"

[pypi-dependencies]
xl-serial = {{ path = "packages/xl-serial", editable = true }}
"""


def write_repo(root: Path, version: str = "0.1.0") -> Path:
    package = root / "packages" / "xl-serial"
    for relative, text in {
        "pyproject.toml": PYPROJECT.format(name="xl-serial", version=version),
        "README.md": "# xl-serial\n",
        "CHANGELOG.md": "## 0.1.0 (unreleased)\n",
        "LICENSE": "BSD-3-Clause\n",
        "src/xl_serial/__init__.py": "",
        "src/xl_serial/py.typed": "",
        "tests/test_it.py": "def test_it() -> None:\n    pass\n",
        "recipe/recipe.yaml": RECIPE.format(name="xl-serial", version=version, module="xl_serial"),
    }.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text, encoding="utf-8")
    (root / "pyproject.toml").write_text(ROOT_PYPROJECT, encoding="utf-8")
    (root / "pixi.toml").write_text(PIXI.format(url=cw.PIXI_SCHEMA_URL), encoding="utf-8")
    (root / "schemas").mkdir(exist_ok=True)
    (root / "schemas" / cw.PIXI_SCHEMA_FILE).write_text(json.dumps(SCHEMA), encoding="utf-8")
    return root


def test_a_miniature_repo_passes(tmp_path: Path) -> None:
    workspace = cw.load_workspace(write_repo(tmp_path))
    assert [p.directory for p in workspace.packages] == ["xl-serial"]
    assert workspace.packages[0].recipe["package"] == {"name": "xl-serial", "version": "0.1.0"}
    assert cw.check_workspace(workspace) == []


def test_a_deleted_changelog_is_found_on_disk(tmp_path: Path) -> None:
    root = write_repo(tmp_path)
    (root / "packages" / "xl-serial" / "CHANGELOG.md").unlink()
    assert cw.check_workspace(cw.load_workspace(root)) == ["packages/xl-serial: missing CHANGELOG.md"]


def test_cache_directories_do_not_count_as_tests(tmp_path: Path) -> None:
    root = write_repo(tmp_path)
    tests = root / "packages" / "xl-serial" / "tests"
    (tests / "test_it.py").unlink()
    (tests / "__pycache__").mkdir()
    (tests / "__pycache__" / "test_it.py").write_text("", encoding="utf-8")
    assert cw.check_workspace(cw.load_workspace(root)) == [
        "packages/xl-serial: tests/ has no test file (expected tests/test_*.py)"
    ]


def test_a_bumped_pyproject_without_a_bumped_recipe_is_found(tmp_path: Path) -> None:
    root = write_repo(tmp_path)
    pyproject = root / "packages" / "xl-serial" / "pyproject.toml"
    pyproject.write_text(PYPROJECT.format(name="xl-serial", version="0.2.0"), encoding="utf-8")
    problems = cw.check_workspace(cw.load_workspace(root))
    assert has(problems, "recipe.yaml: version '0.1.0' differs from pyproject version '0.2.0'"), problems


def test_a_recipe_with_a_typo_does_not_render(tmp_path: Path) -> None:
    root = write_repo(tmp_path)
    recipe = root / "packages" / "xl-serial" / "recipe" / "recipe.yaml"
    recipe.write_text(recipe.read_text(encoding="utf-8").replace("requirements:", "requirments:"), encoding="utf-8")
    problems = cw.check_workspace(cw.load_workspace(root))
    assert has(problems, "packages/xl-serial/recipe/recipe.yaml: does not render", "requirments"), problems


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    root = write_repo(tmp_path)
    (root / "pixi.toml").write_text("[workspace\n", encoding="utf-8")
    assert has(cw.check_workspace(cw.load_workspace(root)), "pixi.toml: not valid TOML")


def test_the_schema_falls_back_to_shared_beside_the_clone(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "clone")
    (root / "schemas" / cw.PIXI_SCHEMA_FILE).unlink()
    problems = cw.check_workspace(cw.load_workspace(root))
    assert has(problems, f"schemas/{cw.PIXI_SCHEMA_FILE}: missing")
    shared = tmp_path / "shared" / "schemas"
    shared.mkdir(parents=True)
    (shared / cw.PIXI_SCHEMA_FILE).write_text(json.dumps(SCHEMA), encoding="utf-8")
    assert cw.find_pixi_schema(root) == shared / cw.PIXI_SCHEMA_FILE
    assert cw.check_workspace(cw.load_workspace(root)) == []


def test_main_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_repo(tmp_path)
    assert cw.main(["--root", str(root)]) == 0
    assert "OK" in capsys.readouterr().out
    (root / "packages" / "xl-serial" / "LICENSE").unlink()
    assert cw.main(["--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "1 problem(s)" in err
    assert "packages/xl-serial: missing LICENSE" in err


# ---------------------------------------------------------------------------------------------------------------
# the real repository


def test_the_repository_is_consistent() -> None:
    problems = cw.check_workspace(cw.load_workspace(REPO_ROOT))
    assert problems == [], "\n".join(problems)

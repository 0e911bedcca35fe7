"""Check that the workspace's packages, recipes, pins and ``pixi.toml`` agree with each other.

Run from anywhere: ``python scripts/check_workspace.py`` (or ``--root <repo>``). It prints one line per problem
and exits 1 when there is any, 0 otherwise.

The checks are pure functions over parsed data (dicts from ``tomllib``, rendered recipes as dicts, the set of
files present in a package) that return a list of problem strings; only ``load_workspace`` and ``main`` touch
the file system. Recipes are rendered with py-rattler-build (offline, no channel access), so ``${{ name }}``,
``${{ version }}`` and ``${{ python_min }}`` are resolved exactly as rattler-build resolves them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the workspace venv runs 3.11+
    import tomli as tomllib  # type: ignore[import-not-found]

Json = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parent.parent

PIXI_SCHEMA_VERSION = "0.77.0"
PIXI_SCHEMA_FILE = f"pixi-manifest-v{PIXI_SCHEMA_VERSION}.schema.json"
PIXI_SCHEMA_URL = f"https://pixi.sh/v{PIXI_SCHEMA_VERSION}/schema/manifest/schema.json"

# conda-forge supplies python_min globally; a local render needs it as a variant.
RECIPE_VARIANTS: dict[str, list[Any]] = {"python_min": ["3.10"]}

# PyPI name -> conda-forge name of every third-party runtime dependency the packages may declare. Siblings map to
# themselves and need no entry. A new dependency must be added here on purpose: the conda name is not always the
# PyPI name.
PYPI_TO_CONDA: dict[str, str] = {
    "cloudpickle": "cloudpickle",
    "pyzmq": "pyzmq",
    "mpi4py": "mpi4py",
    "h5py": "h5py",
    "numpy": "numpy",
    "networkx": "networkx",
    "pysqa": "pysqa",
    "pygraphviz": "pygraphviz",
    "matplotlib": "matplotlib-base",
    "pandas": "pandas",
    "ipython": "ipython",
    "pydantic": "pydantic",
    "cryptography": "cryptography",
}

# Names that must never appear in a pyproject dependency list, with the reason.
FORBIDDEN_PYPI_NAMES: dict[str, str] = {
    "flux-core": "PyPI's flux-core is an unrelated workflow engine; flux comes from conda-forge (pixi feature 'flux')",
    "flux": "PyPI's flux is an unrelated time library; flux comes from conda-forge (pixi feature 'flux')",
    "pixi": "PyPI's pixi is an unrelated image downloader; the real pixi is not a Python package",
}

ENVIRONMENT_NAME = re.compile(r"^[a-z\d\-]+$")
TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
PACKAGE_DOCS = ("README.md", "CHANGELOG.md", "LICENSE")


@dataclass(frozen=True)
class Package:
    """What the checks know about one ``packages/<directory>``."""

    directory: str
    pyproject: Json
    files: frozenset[str]
    """Paths of the files in the package directory, relative to it, with ``/`` separators."""
    recipe: Json | None = None
    """The rendered ``recipe/recipe.yaml`` (``Stage1Recipe.to_dict()`` plus ``schema_version``)."""
    recipe_error: str | None = None
    """Why the recipe could not be rendered; ``None`` when it was, or when there is no recipe file."""

    @property
    def label(self) -> str:
        return f"packages/{self.directory}"


@dataclass(frozen=True)
class Workspace:
    """Everything the checks read, already parsed."""

    root_pyproject: Json
    packages: tuple[Package, ...]
    pixi: Json | None
    pixi_schema: Json | None
    load_problems: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def project_name(pyproject: Json) -> str | None:
    name = pyproject.get("project", {}).get("name")
    return canonicalize_name(name) if isinstance(name, str) else None


def import_name(pyproject: Json) -> str:
    """The import package: the hatch wheel target's package if declared, else the normalized project name."""
    wheel = pyproject.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
    packages = wheel.get("packages")
    if isinstance(packages, list) and packages and isinstance(packages[0], str):
        return packages[0].rstrip("/").rsplit("/", 1)[-1]
    return (project_name(pyproject) or "").replace("-", "_")


def iter_dependency_lists(pyproject: Json) -> Iterator[tuple[str, list[Any]]]:
    """Every dependency list of a pyproject, with where it lives."""
    project = pyproject.get("project", {})
    yield "[project].dependencies", list(project.get("dependencies", []))
    for extra, deps in project.get("optional-dependencies", {}).items():
        yield f"[project.optional-dependencies].{extra}", list(deps)
    for group, deps in pyproject.get("dependency-groups", {}).items():
        yield f"[dependency-groups].{group}", list(deps)
    yield "[build-system].requires", list(pyproject.get("build-system", {}).get("requires", []))


def iter_requirements(pyproject: Json, label: str) -> Iterator[tuple[str, Requirement | str]]:
    """(where, parsed requirement) for every string entry; an unparsable entry yields its problem message."""
    for where, deps in iter_dependency_lists(pyproject):
        for dep in deps:
            if not isinstance(dep, str):
                continue  # {include-group = ...} in [dependency-groups]
            try:
                yield where, Requirement(dep)
            except InvalidRequirement as exc:
                yield where, f"{label} {where}: {dep!r} is not a valid requirement ({exc})"


def parse_conda_spec(spec: str) -> tuple[str, str]:
    """Split a conda MatchSpec like ``pyzmq >=25,<28`` into ``("pyzmq", ">=25,<28")``."""
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$", spec)
    if match is None:
        return spec.strip(), ""
    return match.group(1), match.group(2).replace(" ", "")


def _specifier(text: str) -> SpecifierSet | None:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        return None


def _show(spec: SpecifierSet) -> str:
    return str(spec) or "(any version)"


# ---------------------------------------------------------------------------------------------------------------
# per-package checks


def check_package_files(package: Package) -> list[str]:
    """README, CHANGELOG, LICENSE, py.typed, at least one test file and a recipe exist."""
    problems = []
    for doc in PACKAGE_DOCS:
        if doc not in package.files:
            problems.append(f"{package.label}: missing {doc}")
    typed = f"src/{import_name(package.pyproject)}/py.typed"
    if typed not in package.files:
        problems.append(f"{package.label}: missing {typed} (the package must ship type information)")
    if not any(path.startswith("tests/") and TEST_FILE.search(path) for path in package.files):
        problems.append(f"{package.label}: tests/ has no test file (expected tests/test_*.py)")
    if "recipe/recipe.yaml" not in package.files:
        problems.append(f"{package.label}: missing recipe/recipe.yaml (conda-forge v1 recipe)")
    return problems


def check_static_version(package: Package) -> list[str]:
    """[project] has a name and a static, valid PEP 440 version."""
    label = f"{package.label}/pyproject.toml"
    project = package.pyproject.get("project")
    if not isinstance(project, dict):
        return [f"{label}: no [project] table"]
    problems = []
    if not isinstance(project.get("name"), str):
        problems.append(f"{label}: [project].name is missing")
    if "version" in project.get("dynamic", []):
        problems.append(f'{label}: version is dynamic; write a static [project].version = "x.y.z"')
    version = project.get("version")
    if not isinstance(version, str):
        problems.append(f'{label}: [project].version is missing; write a static version = "x.y.z"')
    else:
        try:
            Version(version)
        except InvalidVersion:
            problems.append(f"{label}: [project].version {version!r} is not a valid PEP 440 version")
    return problems


def expected_run_requirements(
    pyproject: Json, siblings: Iterable[str], label: str
) -> tuple[dict[str, SpecifierSet], list[str]]:
    """The conda run requirements a pyproject's [project].dependencies translate to (extras are not run deps)."""
    sibling_names = {canonicalize_name(s) for s in siblings}
    expected: dict[str, SpecifierSet] = {}
    problems = []
    for dep in pyproject.get("project", {}).get("dependencies", []):
        try:
            req = Requirement(dep)
        except InvalidRequirement:
            continue  # reported by check_sibling_pins
        pypi: str = canonicalize_name(req.name)
        conda: str
        if pypi in sibling_names:
            conda = pypi
        elif pypi in PYPI_TO_CONDA:
            conda = PYPI_TO_CONDA[pypi]
        else:
            problems.append(
                f"{label}: no conda-forge name known for dependency {req.name!r}; add it to PYPI_TO_CONDA in "
                "scripts/check_workspace.py"
            )
            continue
        expected[conda] = req.specifier
    return expected, problems


def check_recipe(package: Package, siblings: Iterable[str]) -> list[str]:
    """The rendered recipe agrees with the pyproject: name, version, run requirements, python floor, tests."""
    label = f"{package.label}/recipe/recipe.yaml"
    if package.recipe_error is not None:
        return [f"{label}: does not render: {package.recipe_error}"]
    recipe = package.recipe
    if recipe is None:
        return []  # a missing recipe file is reported by check_package_files
    project = package.pyproject.get("project", {})
    problems = []
    if recipe.get("schema_version") != 1:
        problems.append(f"{label}: schema_version must be 1 (a v1 recipe), got {recipe.get('schema_version')!r}")

    rendered = recipe.get("package", {})
    name, version = project.get("name"), project.get("version")
    if isinstance(name, str) and rendered.get("name") != canonicalize_name(name):
        problems.append(f"{label}: package name {rendered.get('name')!r} differs from pyproject name {name!r}")
    if isinstance(version, str) and str(rendered.get("version")) != version:
        problems.append(
            f"{label}: version {rendered.get('version')!r} differs from pyproject version {version!r}; "
            "update the recipe's context.version"
        )
    if recipe.get("build", {}).get("noarch") != "python":
        problems.append(f"{label}: build.noarch must be 'python'")

    run: dict[str, SpecifierSet] = {}
    python_floor: SpecifierSet | None = None
    for spec in recipe.get("requirements", {}).get("run", []):
        conda, constraint = parse_conda_spec(str(spec))
        parsed = _specifier(constraint)
        if parsed is None:
            problems.append(
                f"{label}: run requirement {spec!r} uses a conda version spec that cannot be compared with the "
                "pyproject; write it as a PEP 440-style range such as >=1.0,<2"
            )
            continue
        if conda == "python":
            python_floor = parsed
        else:
            run[canonicalize_name(conda)] = parsed

    expected, map_problems = expected_run_requirements(package.pyproject, siblings, f"{package.label}/pyproject.toml")
    problems.extend(map_problems)
    for conda, spec in sorted(expected.items()):
        if conda not in run:
            problems.append(f"{label}: run requirements lack '{conda} {spec}' (a dependency in pyproject.toml)")
        elif run[conda] != spec:
            problems.append(
                f"{label}: run requirement {conda} is '{_show(run[conda])}' but pyproject.toml says '{_show(spec)}'"
            )
    for conda in sorted(set(run) - set(expected)):
        problems.append(f"{label}: run requirement {conda!r} is not a dependency in pyproject.toml")

    requires_python = project.get("requires-python")
    if isinstance(requires_python, str):
        wanted = _specifier(requires_python)
        if python_floor is None:
            problems.append(f"{label}: run requirements lack 'python {requires_python}'")
        elif wanted is not None and python_floor != wanted:
            problems.append(
                f"{label}: run requirement python is '{_show(python_floor)}' but requires-python is "
                f"'{requires_python}'; set context.python_min accordingly"
            )

    python_tests = [t["python"] for t in recipe.get("tests", []) if isinstance(t, dict) and "python" in t]
    module = import_name(package.pyproject)
    if not any(module in t.get("imports", []) for t in python_tests):
        problems.append(f"{label}: no python test imports {module!r}")
    if any(t.get("pip_check") is False for t in python_tests):
        problems.append(f"{label}: pip_check must stay enabled in the python test")

    license_ = project.get("license")
    if isinstance(license_, str) and recipe.get("about", {}).get("license") != license_:
        problems.append(
            f"{label}: about.license {recipe.get('about', {}).get('license')!r} differs from pyproject {license_!r}"
        )
    return problems


# ---------------------------------------------------------------------------------------------------------------
# cross-package checks


def check_sibling_pins(pyprojects: Mapping[str, Json], versions: Mapping[str, str]) -> list[str]:
    """Every requirement on a sibling admits the sibling's current version; package pyprojects pin a range.

    ``pyprojects`` maps a label (the file's path) to its parsed content; ``versions`` maps each sibling's name
    to its current version.
    """
    current = {canonicalize_name(name): version for name, version in versions.items()}
    problems = []
    for label, pyproject in pyprojects.items():
        is_package = pyproject.get("project") is not None
        for where, req in iter_requirements(pyproject, label):
            if isinstance(req, str):
                problems.append(req)
                continue
            sibling = canonicalize_name(req.name)
            if sibling not in current:
                continue
            try:
                version = Version(current[sibling])
            except InvalidVersion:
                continue  # reported by check_static_version
            if not req.specifier.contains(version, prereleases=True):
                problems.append(
                    f"{label} {where}: '{req}' excludes the workspace's {sibling} {version}; widen the range "
                    "or bump the sibling"
                )
            elif is_package and not str(req.specifier):
                problems.append(
                    f"{label} {where}: '{req}' has no version range; pin siblings like "
                    f"'{sibling}>={version.major}.{version.minor},<{version.major}.{version.minor + 1}'"
                )
    return problems


def check_workspace_sources(root_pyproject: Json, packages: Sequence[Package]) -> list[str]:
    """Every sibling used as a dependency resolves to the workspace, and every package is a workspace member."""
    uv = root_pyproject.get("tool", {}).get("uv", {})
    sources: Json = {canonicalize_name(k): v for k, v in uv.get("sources", {}).items()}
    members = uv.get("workspace", {}).get("members", [])
    siblings = {name for p in packages if (name := project_name(p.pyproject))}
    problems = []
    for package in packages:
        path = f"packages/{package.directory}"
        if not any(fnmatch.fnmatchcase(path, pattern.rstrip("/")) for pattern in members):
            problems.append(f"pyproject.toml: [tool.uv.workspace].members does not include {path}")
    used: set[str] = set()
    all_pyprojects = [root_pyproject, *(p.pyproject for p in packages)]
    for pyproject in all_pyprojects:
        for _, req in iter_requirements(pyproject, "pyproject.toml"):
            if isinstance(req, Requirement) and canonicalize_name(req.name) in siblings:
                used.add(canonicalize_name(req.name))
    for sibling in sorted(used):
        if sources.get(sibling) != {"workspace": True}:
            problems.append(
                f"pyproject.toml: [tool.uv.sources] lacks {sibling} = {{ workspace = true }}; without it uv resolves "
                f"{sibling} from PyPI"
            )
    return problems


def check_forbidden_dependencies(pyprojects: Mapping[str, Json]) -> list[str]:
    """No pyproject lists flux-core, flux or pixi, whose PyPI namesakes are unrelated projects."""
    problems = []
    for label, pyproject in pyprojects.items():
        for where, req in iter_requirements(pyproject, label):
            if isinstance(req, Requirement):
                reason = FORBIDDEN_PYPI_NAMES.get(canonicalize_name(req.name))
                if reason is not None:
                    problems.append(f"{label} {where}: {req.name!r} must not be a PyPI dependency: {reason}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# pixi.toml


def check_pixi_schema(manifest: Json, schema: Json) -> list[str]:
    """Validate the parsed pixi.toml against pixi's JSON schema (draft 7) and check the ``$schema`` key."""
    from jsonschema import Draft7Validator  # type: ignore[import-untyped]

    problems = []
    errors = sorted(Draft7Validator(schema).iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"pixi.toml: {where}: {error.message}")
    if manifest.get("$schema") != PIXI_SCHEMA_URL:
        problems.append(
            f'pixi.toml: "$schema" is {manifest.get("$schema")!r}; it must be {PIXI_SCHEMA_URL!r} to match '
            f"schemas/{PIXI_SCHEMA_FILE}"
        )
    return problems


def _environment_features(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [str(v) for v in value.get("features", [])]
    return []


def _normalize_path(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path.rstrip("/")


def check_pixi_consistency(manifest: Json, packages: Sequence[Package]) -> list[str]:
    """pixi.toml agrees with the packages and with itself (what the schema cannot express)."""
    problems = []
    workspace = manifest.get("workspace", manifest.get("project"))
    if not isinstance(workspace, dict):
        problems.append("pixi.toml: no [workspace] table")
        workspace = {}
    platforms = set(workspace.get("platforms", []))

    pypi: Json = {canonicalize_name(k): v for k, v in manifest.get("pypi-dependencies", {}).items()}
    directories = {f"packages/{p.directory}" for p in packages}
    for package in packages:
        name = project_name(package.pyproject)
        if name is None:
            continue
        path = f"packages/{package.directory}"
        entry = pypi.get(name)
        if not isinstance(entry, dict):
            problems.append(f'pixi.toml: [pypi-dependencies] lacks {name} = {{ path = "{path}", editable = true }}')
            continue
        if _normalize_path(str(entry.get("path", ""))) != path:
            problems.append(f"pixi.toml: [pypi-dependencies].{name} has path {entry.get('path')!r}, expected {path!r}")
        if entry.get("editable") is not True:
            problems.append(f"pixi.toml: [pypi-dependencies].{name} must set editable = true")
    for name, entry in pypi.items():
        if isinstance(entry, dict) and "path" in entry:
            path = _normalize_path(str(entry["path"]))
            if path.startswith("packages/") and path not in directories:
                problems.append(f"pixi.toml: [pypi-dependencies].{name} points at {path!r}, which is not a package")

    features: Json = manifest.get("feature", {})
    environments: Json = manifest.get("environments", {})
    used: set[str] = set()
    for env, value in environments.items():
        if not ENVIRONMENT_NAME.match(env):
            problems.append(f"pixi.toml: environment name {env!r} must match {ENVIRONMENT_NAME.pattern}")
        for feature in _environment_features(value):
            used.add(feature)
            if feature not in features:
                problems.append(f"pixi.toml: environment {env!r} uses feature {feature!r}, which is not defined")
    for feature in sorted(set(features) - used):
        problems.append(f"pixi.toml: feature {feature!r} is defined but no environment uses it")
    for feature, table in features.items():
        extra = set(table.get("platforms", [])) - platforms if isinstance(table, dict) else set()
        if extra:
            problems.append(
                f"pixi.toml: feature {feature!r} lists platforms {sorted(extra)} that [workspace].platforms lacks"
            )

    # Every third-party runtime dependency has a conda counterpart: required ones in [dependencies], extras in
    # [dependencies] or some feature.
    default_conda = set(manifest.get("dependencies", {}))
    any_conda = default_conda.union(*(set(t.get("dependencies", {})) for t in features.values() if isinstance(t, dict)))
    for package in packages:
        project = package.pyproject.get("project", {})
        extras = project.get("optional-dependencies", {})
        lists = [("dependencies", project.get("dependencies", []), default_conda)]
        lists += [(f"extra {extra!r}", deps, any_conda) for extra, deps in extras.items()]
        for where, deps, available in lists:
            for dep in deps:
                try:
                    pypi_name = canonicalize_name(Requirement(dep).name)
                except InvalidRequirement:
                    continue  # reported by check_sibling_pins
                conda = PYPI_TO_CONDA.get(pypi_name)
                if conda is not None and conda not in available:
                    section = "[dependencies]" if available is default_conda else "[dependencies] or a feature"
                    problems.append(
                        f"pixi.toml: {package.label} {where} needs {pypi_name}; add conda package {conda!r} to "
                        f"{section}"
                    )
    return problems


# ---------------------------------------------------------------------------------------------------------------
# everything


def check_workspace(workspace: Workspace) -> list[str]:
    """All checks; an empty list means the workspace is consistent."""
    problems = list(workspace.load_problems)
    packages = workspace.packages
    if not packages:
        problems.append("packages/: no packages found (expected packages/*/pyproject.toml)")
    siblings = [name for p in packages if (name := project_name(p.pyproject))]
    for package in packages:
        problems += check_static_version(package)
        problems += check_package_files(package)
        problems += check_recipe(package, siblings)
    pyprojects = {"pyproject.toml": workspace.root_pyproject}
    pyprojects.update({f"{p.label}/pyproject.toml": p.pyproject for p in packages})
    versions = {
        name: version
        for p in packages
        if (name := project_name(p.pyproject)) and isinstance(version := p.pyproject["project"].get("version"), str)
    }
    problems += check_sibling_pins(pyprojects, versions)
    problems += check_workspace_sources(workspace.root_pyproject, packages)
    problems += check_forbidden_dependencies(pyprojects)
    if workspace.pixi is not None:
        if workspace.pixi_schema is not None:
            problems += check_pixi_schema(workspace.pixi, workspace.pixi_schema)
        problems += check_pixi_consistency(workspace.pixi, packages)
    return problems


# ---------------------------------------------------------------------------------------------------------------
# reading the files (the only part that touches the disk)

IGNORED_DIRECTORIES = {"__pycache__", ".mypy_cache", ".hypothesis", ".pytest_cache", ".ruff_cache", ".venv"}


def _list_files(directory: Path) -> frozenset[str]:
    found = set()
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        if path.is_file() and not IGNORED_DIRECTORIES.intersection(relative.parts):
            found.add(relative.as_posix())
    return frozenset(found)


def _load_toml(path: Path, problems: list[str], root: Path) -> Json | None:
    try:
        with path.open("rb") as stream:
            data: Json = tomllib.load(stream)
        return data
    except FileNotFoundError:
        problems.append(f"{path.relative_to(root).as_posix()}: missing")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path.relative_to(root).as_posix()}: not valid TOML ({exc})")
    return None


def render_recipe(path: Path) -> Json:
    """Render a v1 recipe offline with py-rattler-build; raises on a recipe that does not parse or render."""
    from rattler_build import Stage0Recipe, VariantConfig

    stage0 = Stage0Recipe.from_file(path)
    variants = stage0.render(VariantConfig(RECIPE_VARIANTS))
    if len(variants) != 1:
        raise ValueError(f"expected one rendered variant, got {len(variants)}")
    rendered: Json = variants[0].recipe.to_dict()
    rendered["schema_version"] = stage0.schema_version
    return rendered


def find_pixi_schema(root: Path) -> Path | None:
    """The in-repo copy under schemas/, else the shared copy beside the clone (``<repo>/../shared/schemas``)."""
    for candidate in (root / "schemas" / PIXI_SCHEMA_FILE, root.parent / "shared" / "schemas" / PIXI_SCHEMA_FILE):
        if candidate.is_file():
            return candidate
    return None


def load_workspace(root: Path) -> Workspace:
    problems: list[str] = []
    root_pyproject = _load_toml(root / "pyproject.toml", problems, root) or {}
    packages = []
    for pyproject_path in sorted((root / "packages").glob("*/pyproject.toml")):
        directory = pyproject_path.parent
        pyproject = _load_toml(pyproject_path, problems, root)
        if pyproject is None:
            continue
        recipe: Json | None = None
        recipe_error: str | None = None
        recipe_path = directory / "recipe" / "recipe.yaml"
        if recipe_path.is_file():
            try:
                recipe = render_recipe(recipe_path)
            except ImportError as exc:
                recipe_error = f"py-rattler-build is not importable ({exc}); run `uv sync --all-packages`"
            except Exception as exc:  # rattler-build raises its own error types for parse and render failures
                recipe_error = f"{type(exc).__name__}: {exc}"
        packages.append(Package(directory.name, pyproject, _list_files(directory), recipe, recipe_error))

    pixi = _load_toml(root / "pixi.toml", problems, root)
    schema: Json | None = None
    schema_path = find_pixi_schema(root)
    if schema_path is None:
        problems.append(
            f"schemas/{PIXI_SCHEMA_FILE}: missing (and no ../shared/schemas copy); cannot validate pixi.toml"
        )
    else:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    return Workspace(root_pyproject, tuple(packages), pixi, schema, tuple(problems))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this script's repo)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    workspace = load_workspace(root)
    problems = check_workspace(workspace)
    if problems:
        print(f"check_workspace: {len(problems)} problem(s) in {root}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"check_workspace: OK ({len(workspace.packages)} packages, recipes and pixi.toml consistent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

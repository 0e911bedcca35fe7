"""executorlib keeps every extra name of executorlib 1.x, and each brings at least the third-party packages it
brought in 1.x (the 1.11.0 wheel's metadata), following our packages' own requirements and extras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

# executorlib 1.11.0's Provides-Extra and what each requires (its METADATA); jinja2 comes with pysqa there.
EXTRAS_1X = {
    "cache": {"h5py"},
    "mpi": {"mpi4py"},
    "cluster": {"h5py", "pysqa", "jinja2"},
    "graph": {"networkx", "pygraphviz"},
    "graphnotebook": {"networkx", "pygraphviz", "ipython"},
    "validation": {"pydantic"},
    "all": {"h5py", "mpi4py", "pysqa", "jinja2", "networkx", "pygraphviz", "ipython", "pydantic"},
}


def projects() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in (ROOT / "packages").glob("*/pyproject.toml"):
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        found[canonicalize_name(project["name"])] = project
    return found


def third_party(requirements: list[str], ours: dict[str, dict[str, Any]]) -> set[str]:
    """The third-party distributions ``requirements`` pull in through our packages (not their dependencies')."""
    found: set[str] = set()
    pending = [Requirement(text) for text in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name not in ours:
            found.add(name)
            continue
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        project = ours[name]
        texts = list(project.get("dependencies", []))
        for extra in requirement.extras:
            texts += project["optional-dependencies"][extra]
        pending += [Requirement(text) for text in texts]
    return found


def test_every_1x_extra_exists_and_brings_what_it_brought() -> None:
    ours = projects()
    extras: dict[str, list[str]] = ours["executorlib"].get("optional-dependencies", {})
    missing_names = sorted(set(EXTRAS_1X) - set(extras))
    assert not missing_names, f"executorlib lacks the executorlib 1.x extra(s) {missing_names}"
    for extra, wanted in EXTRAS_1X.items():
        brought = third_party([f"executorlib[{extra}]"], ours)
        assert wanted <= brought, f"executorlib[{extra}] does not bring {sorted(wanted - brought)}"


def test_the_core_gives_the_full_api() -> None:
    ours = projects()
    core = {canonicalize_name(Requirement(text).name) for text in ours["executorlib"]["dependencies"]}
    assert {"xl-serial", "xl-comm", "xl-spawn", "xl-graph", "xl-cache"} <= core

"""The compatibility guard: every public name of executorlib 1.11.0 (``snapshot-1.11.0.json``, made by
``scripts/compat_snapshot.py`` from the released wheel) still exists here, and its parameters keep their places
and defaults. New parameters must be keyword-only, or come after all of 1.x's (DESIGN.md principle 8)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = json.loads((Path(__file__).parent / "snapshot-1.11.0.json").read_text())["names"]

#: Names compat-1x.md allows us to leave out, with the section that says so.
OPTIONAL = {"executorlib.get_cache_data_queue": "§5.5: the 1.11-only get_cache_data_queue is optional"}

#: Constructors 1.x users never call, with the reason; the name, its methods and properties are still checked.
NOT_CONSTRUCTED = {
    "executorlib.BaseExecutor": "1.x's BaseExecutor(executor) takes an internal 1.x task scheduler that no public "
    "name builds; users only subclass-check it (isinstance) and call its methods",
}

POSITIONAL = {"POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"}
BY_KEYWORD = {"POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY"}


def _load_snapshot_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat_snapshot", ROOT / "scripts" / "compat_snapshot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OURS: dict[str, Any] = _load_snapshot_script().describe()


def signature_problems(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """What breaks a 1.x caller when parameters ``old`` became ``new`` (both as the snapshot describes them)."""
    problems = []
    by_name = {p["name"]: p for p in new}
    old_positional = [p for p in old if p["kind"] in POSITIONAL]
    for p in old:
        mine = by_name.get(p["name"])
        star = {"VAR_POSITIONAL", "VAR_KEYWORD"}
        if p["kind"] in star:
            if not any(q["kind"] == p["kind"] for q in new):
                problems.append(f"*{p['name']} ({p['kind']}) is gone")
            continue
        if mine is None:
            problems.append(f"parameter {p['name']!r} is gone")
            continue
        if p["kind"] in POSITIONAL and (mine["position"] != p["position"] or mine["kind"] not in POSITIONAL):
            problems.append(f"{p['name']!r} was positional #{p['position']}, now #{mine['position']} ({mine['kind']})")
        if p["kind"] in BY_KEYWORD and mine["kind"] not in BY_KEYWORD:
            problems.append(f"{p['name']!r} can no longer be passed by keyword ({mine['kind']})")
        if p["default"] is not None and mine["default"] != p["default"]:
            problems.append(f"{p['name']!r} defaulted to {p['default']}, now {mine['default']}")
    known = {p["name"] for p in old}
    for q in new:
        if q["name"] in known or q["kind"] in {"KEYWORD_ONLY", "VAR_POSITIONAL", "VAR_KEYWORD"}:
            continue
        if q["position"] < len(old_positional) or q["default"] is None:
            problems.append(
                f"new parameter {q['name']!r} at #{q['position']} is positional among (or without a default after) "
                "1.x's; make it keyword-only"
            )
    return problems


@pytest.mark.parametrize("name", sorted(SNAPSHOT))
def test_the_1x_name_keeps_its_place(name: str) -> None:
    old = SNAPSHOT[name]
    mine = OURS.get(name)
    if mine is None and name in OPTIONAL:
        return  # allowed to be missing (see OPTIONAL); compared like any other name once it exists
    assert mine is not None, f"{name} of executorlib 1.11.0 is missing"
    if old["in_all"]:
        assert mine["in_all"], f"{name} is no longer in __all__"
    if (
        old["kind"] in {"class", "function", "method"}
        and old.get("parameters") is not None
        and (name not in NOT_CONSTRUCTED)
    ):
        assert mine.get("parameters") is not None, f"{name} has no readable signature any more"
        problems = signature_problems(old["parameters"], mine["parameters"])
        assert not problems, f"{name}: " + "; ".join(problems)
    if old["kind"] == "property":
        assert mine["kind"] == "property", f"{name} was a property, now a {mine['kind']}"


def _param(
    name: str, position: int, kind: str = "POSITIONAL_OR_KEYWORD", default: str | None = "None"
) -> dict[str, Any]:
    return {"name": name, "position": position, "kind": kind, "default": default}


def test_the_rules_catch_each_breaking_change() -> None:
    old = [_param("a", 0, default=None), _param("b", 1), _param("c", 2, default="1")]
    assert signature_problems(old, old) == []
    moved = [_param("a", 0, default=None), _param("c", 1, default="1"), _param("b", 2)]
    assert signature_problems(old, moved)
    dropped = old[:2]
    assert signature_problems(old, dropped) == ["parameter 'c' is gone"]
    changed = [*old[:2], _param("c", 2, default="2")]
    assert signature_problems(old, changed) == ["'c' defaulted to 1, now 2"]
    inserted = [old[0], _param("new", 1), _param("b", 2), _param("c", 3, default="1")]
    assert signature_problems(old, inserted)
    appended_keyword_only = [*old, _param("new", 3, kind="KEYWORD_ONLY", default="False")]
    assert signature_problems(old, appended_keyword_only) == []
    appended_after = [*old, _param("new", 3, default="False")]
    assert signature_problems(old, appended_after) == []
    made_keyword_only = [*old[:2], _param("c", 2, kind="KEYWORD_ONLY", default="1")]
    assert signature_problems(old, made_keyword_only)


names = st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=6, unique=True)


@given(names, st.data())
def test_appending_keyword_only_parameters_never_breaks_and_swapping_always_does(
    chosen: list[str], data: st.DataObject
) -> None:
    old = [_param(name, index) for index, name in enumerate(chosen)]
    extra = data.draw(st.from_regex(r"[A-Z]{1,4}", fullmatch=True))
    assert signature_problems(old, [*old, _param(extra, len(old), kind="KEYWORD_ONLY")]) == []
    if len(old) > 1:
        i, j = data.draw(st.sampled_from([(i, j) for i in range(len(old)) for j in range(i + 1, len(old))]))
        order = list(chosen)
        order[i], order[j] = order[j], order[i]
        swapped = [_param(name, index) for index, name in enumerate(order)]
        assert signature_problems(old, swapped)

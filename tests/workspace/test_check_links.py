"""Tests of scripts/check_links.py, the internal-link check of the built documentation site (scripts/docs.sh):
a miniature site written into ``tmp_path`` with one kind of broken link at a time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_links.py"


@pytest.fixture(scope="module")
def check_links() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_links", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_links"] = module
    spec.loader.exec_module(module)
    return module


def site(tmp_path: Path, index_body: str) -> Path:
    (tmp_path / "guide").mkdir()
    (tmp_path / "index.html").write_text(f"<html><body><h1 id='top'>x</h1>{index_body}</body></html>")
    (tmp_path / "guide" / "a.html").write_text(
        "<html><body><section id='part'><a href='../index.html#top'>up</a></section></body></html>"
    )
    return tmp_path


def test_a_site_whose_links_resolve_passes(check_links: ModuleType, tmp_path: Path) -> None:
    body = "<a href='guide/a.html#part'>a</a><a href='#top'>top</a><a href='https://example.org/x'>ext</a>"
    assert check_links.broken_links(site(tmp_path, body)) == []
    assert check_links.main([str(tmp_path)]) == 0


def test_a_link_to_a_missing_page_is_reported(check_links: ModuleType, tmp_path: Path) -> None:
    problems = check_links.broken_links(site(tmp_path, "<a href='guide/b.html'>b</a>"))
    assert len(problems) == 1 and "guide/b.html" in problems[0] and "no file" in problems[0]
    assert check_links.main([str(tmp_path)]) == 1


def test_a_missing_anchor_is_reported(check_links: ModuleType, tmp_path: Path) -> None:
    problems = check_links.broken_links(site(tmp_path, "<a href='guide/a.html#nowhere'>a</a><img src='pic.png'>"))
    assert any("no id 'nowhere'" in problem for problem in problems)
    assert any("pic.png" in problem for problem in problems)
    assert len(problems) == 2


def test_a_bad_command_line_names_the_usage(check_links: ModuleType, tmp_path: Path) -> None:
    assert check_links.main([str(tmp_path / "missing")]) == 2

"""scripts/test.sh runs every suite in one pytest process (rootdir imports): two test modules with the same file
name would stop the whole run at collection ("import file mismatch"). Keep every test module's name unique."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_module_name_is_unique() -> None:
    suites = [*REPO.glob("packages/*/tests"), REPO / "tests"]
    names = Counter(path.name for suite in suites for path in suite.rglob("*.py") if path.name != "conftest.py")
    names.pop("__init__.py", None)
    assert sum(1 for suite in suites for _ in suite.rglob("test_*.py")) > 100  # the suites were found
    assert not [name for name, count in names.items() if count > 1], names.most_common(3)

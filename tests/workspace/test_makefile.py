"""The root Makefile (CONTRIBUTING.md's task runner): every target it lists resolves to the commands the docs
promise, and a bad PKG stops make before anything runs. Dry runs (``make -n``) only: the targets themselves run
tests, benchmarks and a SLURM cluster."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in (REPO_ROOT / "packages").iterdir() if (p / "src").is_dir())

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed (apt install make)")


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dry(*args: str) -> str:
    done = _make("-n", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_phony_target_is_listed_by_help_and_resolves() -> None:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert phony is not None
    targets = [target for target in phony.group(1).split() if target != "help"]
    listed = _make("help").stdout
    for target in targets:
        assert f"make {target}" in listed or f"/ {target}" in listed, f"make help does not mention {target}"
        _dry(target, "PKG=xl-serial")


@pytest.mark.parametrize("package", PACKAGES)
def test_test_and_check_run_on_the_named_package(package: str) -> None:
    assert f"pytest -q -p no:randomly packages/{package}/tests -k x" in _dry("test", f"PKG={package}", "ARGS=-k x")
    check = _dry("check", f"PKG={package}")
    assert f"ruff check packages/{package}" in check
    assert f"ruff format --check packages/{package}" in check
    assert "mypy" in check and "--strict src" in check


def test_all_is_the_ci_script() -> None:
    assert _dry("all").strip() == "bash scripts/test.sh"


@pytest.mark.parametrize(
    ("pkg", "named"),
    [("", "PKG is not set"), ("xl-com", "'xl-com' is not a folder of packages/"), ("xl-comm nope", "'nope' is")],
)
def test_a_bad_pkg_stops_make_naming_the_value_and_the_packages(pkg: str, named: str) -> None:
    for target in ("test", "check"):
        done = _make("-n", target, f"PKG={pkg}")
        assert done.returncode == 2
        assert named in done.stderr
        assert "xl-comm" in done.stderr and f"make {target} PKG=xl-comm" in done.stderr
        assert done.stdout == ""  # nothing ran

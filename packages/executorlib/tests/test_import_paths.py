"""What a worker's PYTHONPATH gets from this process: the folders a fresh interpreter would not have, and not the
ones the site directories' .pth files add anyway (each entry in front of the standard library slows every import
of every worker's start)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
from executorlib.launchers import protocol
from executorlib.launchers.protocol import site_paths, user_import_paths


def test_folders_of_pth_files_are_left_to_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    editable, added, also = tmp_path / "editable_src", tmp_path / "added_by_a_script", site_dir / "relative"
    for folder in (editable, added, also):
        folder.mkdir()
    (site_dir / "_editable_impl_pkg.pth").write_text(f"# a comment\n{editable}\nimport os\n\nrelative\n")
    (site_dir / ".hidden.pth").write_text(f"{added}\n")  # site skips dot files
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_dir)])
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    monkeypatch.setattr(sys, "path", [str(added), str(editable), str(also), str(added)])
    assert site_paths() == {str(editable), str(also)}
    paths = user_import_paths()
    assert paths == [os.getcwd(), str(added)], "each folder once, the .pth folders left out"


def test_a_pth_file_added_later_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    first, later = tmp_path / "first", tmp_path / "later"
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_dir)])
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    (site_dir / "a.pth").write_text(f"{first}\n")
    assert site_paths() == {str(first)}
    (site_dir / "b.pth").write_text(f"{later}\n")
    os.utime(site_dir, ns=(0, os.stat(site_dir).st_mtime_ns + 10**9))  # as a second install would change it
    assert site_paths() == {str(first), str(later)}
    assert str(site_dir) in protocol._PTH_CACHE


def test_this_environment_s_editable_packages_need_no_pythonpath() -> None:
    """The premise: a fresh interpreter of this environment imports the workspace packages without our PYTHONPATH
    (they come from .pth files), so leaving their folders out loses nothing."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    code = "import xl_comm.worker, executorlib; print(xl_comm.worker.__file__)"
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    import xl_comm.worker

    assert run.stdout.strip() == xl_comm.worker.__file__
    assert not any(path.endswith(os.path.join("xl-comm", "src")) for path in user_import_paths())

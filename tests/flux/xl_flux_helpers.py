"""A real Flux instance for tests: ``flux start --test-size=2`` (two brokers on this machine, two simulated nodes).

``ensure_flux()`` makes flux usable (a conda environment's flux on PATH with its bindings, else running
``scripts/flux-setup.sh`` once when ``/opt/flux`` or the bindings are missing) and returns the ``flux`` command; it
raises ``FluxUnavailable`` only when ``XL_FLUX_UNAVAILABLE`` is set (scripts/test.sh sets it when the installer
says flux cannot run on this machine), else ``FluxMissing``: tests fail, they do not skip, when flux should work
and does not. ``start_flux_instance()`` starts one instance and always stops it: ``flux shutdown``, then SIGKILL to
its process group. Every blocking call has a timeout.
Facts behind the steps: /work/shared/notes/flux.md.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import shutil
import signal
import site
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "flux-setup.sh"
PREFIX = Path("/opt/flux")  # where flux-setup.sh installs it (the prebuilt tree is not relocatable)
FLUX = PREFIX / "bin" / "flux"
SIZE = 2  # brokers, i.e. simulated nodes; each sees every core of this machine
START_TIMEOUT = 60.0  # flux start --test-size=2 takes about 1 s
STOP_TIMEOUT = 30.0
SETUP_TIMEOUT = 600.0  # a first install runs apt-get (about 10 s measured; allow for slow mirrors)


class FluxUnavailable(Exception):
    """Flux cannot run on this machine (``XL_FLUX_UNAVAILABLE``): the flux tests skip with this reason."""


class FluxMissing(Exception):
    """Flux should work here and does not: the flux tests fail with this message."""


def bindings_importable() -> bool:
    try:
        importlib.import_module("flux.job")
    except ImportError:
        return False
    return True


def _bindings_directory() -> Path | None:
    found = sorted(PREFIX.glob("lib/python3.*/site-packages"))
    return found[0] if found else None


def ensure_flux() -> str:
    """The ``flux`` command, with ``import flux.job`` working in this process: /opt/flux's, else a ``flux`` on
    PATH whose bindings this python imports (a conda environment: ``pixi run -e flux test-flux``)."""
    reason = os.environ.get("XL_FLUX_UNAVAILABLE")
    if reason:
        raise FluxUnavailable(reason)
    on_path = shutil.which("flux")
    if not FLUX.is_file() and on_path is not None and bindings_importable():
        return on_path
    if not (FLUX.is_file() and bindings_importable()):
        try:
            proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=SETUP_TIMEOUT)
        except subprocess.TimeoutExpired as slow:
            raise FluxMissing(f"{SETUP} did not finish within {SETUP_TIMEOUT} s") from slow
        if proc.returncode != 0:
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
            raise FluxMissing(
                f"flux is missing and {SETUP} exited {proc.returncode}: {lines[-1] if lines else ''}\n"
                "Run scripts/flux-setup.sh (as root); where flux cannot run, set XL_FLUX_UNAVAILABLE=<reason> "
                "to skip the flux tests."
            )
        bindings = _bindings_directory()
        if bindings is not None and not bindings_importable():
            site.addsitedir(str(bindings))  # the new .pth counts from the next interpreter on
            importlib.invalidate_caches()
    if not FLUX.is_file():
        raise FluxMissing(f"{FLUX} is missing after {SETUP} succeeded")
    if not bindings_importable():
        raise FluxMissing(f"import flux.job fails after {SETUP}: cffi, ply and pyyaml come from the dev group")
    return str(FLUX)


@dataclass(frozen=True)
class FluxInstance:
    """A running instance: its URI, its size, and a helper that runs flux commands in it."""

    uri: str
    flux: str
    size: int
    log: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["FLUX_URI"] = self.uri
        env["PATH"] = f"{Path(self.flux).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(
        self, args: Sequence[str], *, timeout: float = 60.0, check: bool = True, cwd: str | Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``flux ARGS`` against this instance; raises with its output when ``check`` and it fails."""
        proc = subprocess.run(
            [self.flux, *args], capture_output=True, text=True, timeout=timeout, env=self.env(), cwd=cwd
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"flux {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe, or b"" when it closes or ``timeout`` passes (waits on the fd, no polling)."""
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b""
        chunk = os.read(fd, 4096)
        if not chunk:
            return b""
        data += chunk
    return data.split(b"\n", 1)[0]


@contextlib.contextmanager
def start_flux_instance(flux: str, *, size: int = SIZE, timeout: float = START_TIMEOUT) -> Iterator[FluxInstance]:
    """Start ``flux start --test-size=size`` whose initial program prints its URI and sleeps; stop it on exit."""
    log = Path(tempfile.mkdtemp(prefix="xl-flux-")) / "flux-start.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            # The initial program lives as long as this process: a test run killed by a signal (no teardown)
            # leaves no instance behind.
            [
                flux,
                "start",
                f"--test-size={size}",
                "sh",
                "-c",
                f'echo "$FLUX_URI"; exec tail --pid={os.getpid()} -f /dev/null',
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,  # its own group: the finally below kills every broker
            cwd="/",  # jobs without a cwd would run here: a neutral place
        )
    try:
        assert proc.stdout is not None
        uri = _read_line(proc.stdout, timeout).decode().strip()
        if not uri:
            raise FluxMissing(
                f"flux start --test-size={size} printed no URI within {timeout} s (rc {proc.poll()}); "
                f"its log {log}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        # Keep reading its stdout so a chatty broker never blocks on a full pipe.
        drain = threading.Thread(target=lambda: proc.stdout.read() if proc.stdout else None, daemon=True)
        drain.start()
        yield FluxInstance(uri=uri, flux=flux, size=size, log=log)
    finally:
        try:
            if proc.poll() is None and "uri" in locals() and uri:
                env = dict(os.environ, FLUX_URI=uri)
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    subprocess.run([flux, "shutdown", "--quiet"], env=env, timeout=STOP_TIMEOUT, capture_output=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)  # rc 129 is expected: the initial program gets SIGHUP
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)

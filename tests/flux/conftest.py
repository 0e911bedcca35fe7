"""Tests against a real Flux instance: ``flux start --test-size=2``, started once per session.

Every test under tests/flux is marked ``flux`` (select with ``-m flux``, leave out with ``-m "not flux"``) and
runs inside the instance: the session fixture ``flux_instance`` sets ``FLUX_URI`` and puts flux's bin directory
first on ``PATH`` for the session (not for anything outside the tests), and restores both afterwards. Where flux
is missing the tests fail; they skip only when ``XL_FLUX_UNAVAILABLE`` names why flux cannot run here
(scripts/test.sh sets it from scripts/flux-setup.sh's exit status 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from xl_flux_helpers import FluxInstance, FluxMissing, FluxUnavailable, ensure_flux, start_flux_instance

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "flux: runs inside the real Flux test instance (flux start --test-size=2); tests/flux only"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.flux)
            item.fixturenames.insert(0, "flux_instance")  # no flux test runs outside the instance


@pytest.fixture(scope="session")
def flux_instance() -> Iterator[FluxInstance]:
    """The running instance (``uri``, ``size``, ``run(args)``); FLUX_URI and PATH point at it meanwhile."""
    try:
        flux = ensure_flux()
    except FluxUnavailable as reason:
        pytest.skip(f"flux cannot run here: {reason}")
    except FluxMissing as problem:
        pytest.fail(str(problem), pytrace=False)
    saved = {name: os.environ.get(name) for name in ("FLUX_URI", "PATH")}
    with start_flux_instance(flux) as instance:
        os.environ["FLUX_URI"] = instance.uri
        os.environ["PATH"] = f"{Path(flux).parent}{os.pathsep}{saved['PATH'] or ''}"
        try:
            yield instance
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

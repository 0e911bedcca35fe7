"""Fixtures for the spawner tests: both sentinel kinds, and spawners that are always shut down."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from spawn_helpers import pidfd_works
from xl_spawn import SubprocessSpawner


@pytest.fixture(params=["pidfd", "pipe"])
def sentinel_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once with the pidfd sentinel and once with the pipe-and-thread fallback."""
    kind: str = request.param
    if kind == "pidfd" and not pidfd_works():
        pytest.skip("os.pidfd_open is not available here")
    if kind == "pipe":
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    return kind


@pytest.fixture
def make_spawner(sentinel_kind: str) -> Iterator[Callable[..., SubprocessSpawner]]:
    """A factory of spawners that are all shut down at teardown, whatever the test did."""
    made: list[SubprocessSpawner] = []

    def make(**kwargs: object) -> SubprocessSpawner:
        spawner = SubprocessSpawner(**kwargs)  # type: ignore[arg-type]
        made.append(spawner)
        return spawner

    yield make
    for spawner in made:
        spawner.shutdown(wait=True)

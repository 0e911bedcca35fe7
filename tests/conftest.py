"""Shared fixtures of the cross-package suites (contract, crash, integration).

Every executor a test creates goes through ``make_executor`` or ``executor_factory``, so it is shut down in
teardown with a bounded wait: a shutdown that hangs fails the test after ``SHUTDOWN_TIMEOUT`` seconds instead
of stalling the run. executorlib is imported inside the fixtures, never at module level, so the suites
collect while the package is still incomplete.

The task functions live in ``xl_test_helpers`` next to this file (pytest puts this directory on ``sys.path``
when it loads this conftest); workers import that module, which costs them only standard-library imports.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from xl_test_helpers import Gate, call_bounded

SHUTDOWN_TIMEOUT = 30.0
CONTRACT_DIR = Path(__file__).resolve().parent / "contract"
CONTRACT_FILE = CONTRACT_DIR / "test_executor_contract.py"

ONE_PROCESS = "one-process"
BLOCK = "block"
STDLIB = "stdlib-process-pool"
FILE_MODE = "test-cluster-file-mode"

EXECUTOR_KINDS = [
    pytest.param(ONE_PROCESS, id=ONE_PROCESS),
    pytest.param(BLOCK, id=BLOCK),
    # The reference implementation validates the contract tests themselves; it runs in tests/contract only.
    pytest.param(STDLIB, id=STDLIB, marks=pytest.mark.stdlib_reference),
    # TestClusterExecutor: one task file per call, run by a local process (file mode); the Executor contract only.
    pytest.param(FILE_MODE, id=FILE_MODE, marks=pytest.mark.file_mode),
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stdlib_reference: runs against concurrent.futures.ProcessPoolExecutor; kept in tests/contract only",
    )
    config.addinivalue_line(
        "markers", "file_mode: runs against TestClusterExecutor (file mode); kept in the Executor contract only"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the stdlib reference parameter outside the contract suite, and file mode outside the Executor
    contract (the crash, MPI and integration suites test the socket executors)."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        path = item.path.resolve()
        reference_outside = CONTRACT_DIR not in path.parents and item.get_closest_marker("stdlib_reference")
        file_mode_outside = path != CONTRACT_FILE and item.get_closest_marker("file_mode")
        if reference_outside or file_mode_outside:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def shutdown_bounded(executor: concurrent.futures.Executor, timeout: float = SHUTDOWN_TIMEOUT) -> str | None:
    """Shut ``executor`` down (waiting, cancelling what has not started); return a problem or None."""
    try:
        call_bounded(
            lambda: executor.shutdown(wait=True, cancel_futures=True), timeout, what=f"{executor!r}.shutdown()"
        )
    except TimeoutError as exc:
        return str(exc)
    except Exception as exc:
        return f"{executor!r}.shutdown() raised {exc!r}"
    return None


@pytest.fixture
def executor_registry() -> Iterator[list[concurrent.futures.Executor]]:
    """Executors to shut down in teardown (newest first); the test fails if any shutdown hangs or raises."""
    executors: list[concurrent.futures.Executor] = []
    yield executors
    problems = [p for exe in reversed(executors) if (p := shutdown_bounded(exe)) is not None]
    if problems:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def make_executor(executor_registry: list[concurrent.futures.Executor]) -> Callable[..., Any]:
    """``make_executor(**kwargs)`` builds ``SingleNodeExecutor(**kwargs)`` and registers it for teardown."""

    def make(**kwargs: Any) -> Any:
        from executorlib import SingleNodeExecutor

        executor = SingleNodeExecutor(**kwargs)
        executor_registry.append(executor)
        return executor

    return make


class ExecutorFactory:
    """Builds executors of one kind; ``factory(**overrides)`` changes the defaults (``max_workers=2``)."""

    def __init__(self, kind: str, registry: list[concurrent.futures.Executor], scratch: Path) -> None:
        self.kind = kind
        self._registry = registry
        self._scratch = scratch  # file mode: a fresh cache directory per executor

    def __repr__(self) -> str:
        return f"ExecutorFactory({self.kind!r})"

    @property
    def is_reference(self) -> bool:
        return self.kind == STDLIB

    @property
    def block_allocation(self) -> bool:
        return self.kind == BLOCK

    @property
    def file_mode(self) -> bool:
        return self.kind == FILE_MODE

    def __call__(self, **overrides: Any) -> Any:
        if self.is_reference:
            unsupported = sorted(set(overrides) - {"max_workers"})
            if unsupported:
                raise TypeError(f"the stdlib reference takes only max_workers, not {unsupported}")
            executor: Any = concurrent.futures.ProcessPoolExecutor(overrides.get("max_workers", 2))
        elif self.file_mode:
            from executorlib.api import TestClusterExecutor

            # File mode takes no max_workers (every call is a job of its own): a test that needs the limit skips.
            kwargs = {key: value for key, value in overrides.items() if key != "max_workers"}
            cache = self._scratch / f"cache-{len(self._registry)}"
            executor = TestClusterExecutor(**{"cache_directory": str(cache), **kwargs})
        else:
            from executorlib import SingleNodeExecutor

            kwargs = {"max_workers": 2, "block_allocation": self.block_allocation, **overrides}
            executor = SingleNodeExecutor(**kwargs)
        self._registry.append(executor)
        return executor

    def skip_if_reference(self, reason: str) -> None:
        if self.is_reference:
            pytest.skip(f"stdlib reference: {reason}")

    def skip_if_file_mode(self, reason: str) -> None:
        if self.file_mode:
            pytest.skip(f"file mode (TestClusterExecutor): {reason}")


@pytest.fixture(params=EXECUTOR_KINDS)
def executor_factory(
    request: pytest.FixtureRequest, executor_registry: list[concurrent.futures.Executor], tmp_path: Path
) -> ExecutorFactory:
    return ExecutorFactory(request.param, executor_registry, tmp_path)


@pytest.fixture
def executorlib_api() -> Any:
    """The ``executorlib.api`` module (imported lazily)."""
    import executorlib.api

    return executorlib.api


@pytest.fixture
def remote_traceback_type() -> type[BaseException]:
    from xl_serial import RemoteTraceback

    return RemoteTraceback


@pytest.fixture
def gate(tmp_path: Path, executor_registry: list[concurrent.futures.Executor]) -> Iterator[Gate]:
    """A release gate for blocking tasks; opened in teardown *before* the executors are shut down
    (it depends on ``executor_registry``, so pytest tears it down first)."""
    directory = tmp_path / "gate"
    directory.mkdir()
    the_gate = Gate(directory)
    yield the_gate
    the_gate.release()

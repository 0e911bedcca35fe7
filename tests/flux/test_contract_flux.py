"""The shared Executor contract suite (tests/contract/test_executor_contract.py) against the Flux executors in the
real instance: FluxJobExecutor in both modes, and FluxClusterExecutor's file mode (one ``flux batch`` job per call).

Only here, so the contract suite's own parametrisation stays as it is; like everything in tests/flux it runs inside
the session's ``flux start --test-size=2`` instance.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

CONTRACT = Path(__file__).resolve().parents[1] / "contract"
if str(CONTRACT) not in sys.path:
    sys.path.insert(0, str(CONTRACT))

import test_executor_contract as contract  # noqa: E402

# The cases that take an executor_factory (the others test SingleNodeExecutor, which runs elsewhere).
globals().update(
    {
        name: test
        for name, test in vars(contract).items()
        if name.startswith("test_") and "executor_factory" in inspect.signature(test).parameters
    }
)

ONE_PROCESS, BLOCK, CLUSTER = "one-process", "block", "cluster-file-mode"


class FluxExecutorFactory:
    """``factory(**overrides)`` builds a FluxJobExecutor (``max_workers=2``) or a FluxClusterExecutor (a fresh
    cache directory each), registered for bounded teardown."""

    is_reference = False

    def __init__(self, kind: str, registry: list[concurrent.futures.Executor], scratch: Path) -> None:
        self.mode = kind
        # The contract suite sizes a few workloads by "one-process" / "block": a batch job per call is the former.
        self.kind = ONE_PROCESS if kind == CLUSTER else kind
        self._registry = registry
        self._scratch = scratch

    def __repr__(self) -> str:
        return f"FluxExecutorFactory({self.mode!r})"

    @property
    def block_allocation(self) -> bool:
        return self.mode == BLOCK

    @property
    def file_mode(self) -> bool:
        return self.mode == CLUSTER

    def __call__(self, **overrides: Any) -> Any:
        executor: Any
        if self.file_mode:
            from executorlib import FluxClusterExecutor

            kwargs = {key: value for key, value in overrides.items() if key != "max_workers"}
            cache = self._scratch / f"cache-{len(self._registry)}"
            executor = FluxClusterExecutor(**{"cache_directory": str(cache), **kwargs})
        else:
            from executorlib import FluxJobExecutor

            executor = FluxJobExecutor(**{"max_workers": 2, "block_allocation": self.block_allocation, **overrides})
        self._registry.append(executor)
        return executor

    def skip_if_reference(self, reason: str) -> None:
        return None

    def skip_if_file_mode(self, reason: str) -> None:
        if self.file_mode:
            pytest.skip(f"file mode (FluxClusterExecutor): {reason}")


@pytest.fixture(
    params=[
        pytest.param(ONE_PROCESS, id="flux-one-process"),
        pytest.param(BLOCK, id="flux-block"),
        pytest.param(CLUSTER, id="flux-cluster-file-mode"),
    ]
)
def executor_factory(
    request: pytest.FixtureRequest, executor_registry: list[concurrent.futures.Executor], tmp_path: Path
) -> FluxExecutorFactory:
    return FluxExecutorFactory(request.param, executor_registry, tmp_path)

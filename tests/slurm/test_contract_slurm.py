"""The shared Executor contract suite (tests/contract/test_executor_contract.py) against SlurmJobExecutor on the
real cluster, in both modes. It runs from the login side: outside an allocation every srun makes an allocation of
its own, which on the test cluster takes tens of milliseconds.

Only here, so the contract suite's own parametrisation stays as it is; like everything in tests/slurm it is
marked ``slurm`` and skips with the script's reason where SLURM cannot run.
"""

from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path
from typing import Any

import pytest

CONTRACT = Path(__file__).resolve().parents[1] / "contract"
if str(CONTRACT) not in sys.path:
    sys.path.insert(0, str(CONTRACT))

import test_executor_contract as contract  # noqa: E402

globals().update({name: getattr(contract, name) for name in dir(contract) if name.startswith("test_")})


class SlurmExecutorFactory:
    """``factory(**overrides)`` builds a SlurmJobExecutor (``max_workers=2``), registered for bounded teardown."""

    is_reference = False

    def __init__(self, kind: str, registry: list[concurrent.futures.Executor]) -> None:
        self.kind = kind  # the contract suite sizes a few workloads by "one-process" / "block"
        self._registry = registry

    def __repr__(self) -> str:
        return f"SlurmExecutorFactory({self.kind!r})"

    @property
    def block_allocation(self) -> bool:
        return self.kind == "block"

    def __call__(self, **overrides: Any) -> Any:
        from executorlib import SlurmJobExecutor

        executor = SlurmJobExecutor(**{"max_workers": 2, "block_allocation": self.block_allocation, **overrides})
        self._registry.append(executor)
        return executor

    def skip_if_reference(self, reason: str) -> None:
        return None

    def skip_if_file_mode(self, reason: str) -> None:
        return None  # socket executors only


@pytest.fixture(params=[pytest.param("one-process", id="slurm-one-process"), pytest.param("block", id="slurm-block")])
def executor_factory(
    request: pytest.FixtureRequest,
    slurm_cluster: Any,
    executor_registry: list[concurrent.futures.Executor],
) -> SlurmExecutorFactory:
    return SlurmExecutorFactory(request.param, executor_registry)

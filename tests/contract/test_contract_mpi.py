"""The shared Executor contract suite with every call on two MPI ranks (``resource_dict={"cores": 2}``).

A call on N ranks returns the list of the N ranks' values, while the contract compares single values; the
executor under test is therefore seen through ``RankZeroView``, which checks that each answer came from exactly two
ranks and hands on rank 0's value. Submission, cancellation, callbacks, map and shutdown are the real executor's.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
import test_executor_contract as contract

globals().update({name: getattr(contract, name) for name in dir(contract) if name.startswith("test_")})

RANKS = 2


def _have_mpi() -> bool:
    from xl_spawn import find_mpiexec

    return importlib.util.find_spec("mpi4py") is not None and find_mpiexec() is not None


pytestmark = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")


class _RankZeroFuture(Future[Any]):
    """Mirrors a Future of a two-rank call: its outcome is rank 0's value; cancelling it cancels the call."""

    def __init__(self, inner: Future[Any]) -> None:
        super().__init__()
        self._inner = inner
        inner.add_done_callback(self._mirror)

    def cancel(self) -> bool:
        return self._inner.cancel() and super().cancel()

    def running(self) -> bool:
        return self._inner.running()

    def _mirror(self, inner: Future[Any]) -> None:
        if inner.cancelled():
            super().cancel()
            return
        error = inner.exception()
        if error is not None:
            self.set_exception(error)
            return
        values = inner.result()
        if not isinstance(values, list) or len(values) != RANKS:
            self.set_exception(AssertionError(f"expected one value per rank from {RANKS} ranks, got {values!r}"))
        else:
            self.set_result(values[0])


class RankZeroView(concurrent.futures.Executor):
    def __init__(self, executor: Any) -> None:
        self._executor = executor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return _RankZeroFuture(self._executor.submit(fn, *args, **kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)


class MpiExecutorFactory:
    """``factory(**overrides)``: a SingleNodeExecutor whose calls run on two ranks, seen through RankZeroView."""

    is_reference = False

    def __init__(self, kind: str, registry: list[concurrent.futures.Executor]) -> None:
        self.kind = kind
        self._registry = registry

    def __repr__(self) -> str:
        return f"MpiExecutorFactory({self.kind!r})"

    @property
    def block_allocation(self) -> bool:
        return self.kind == "block"

    def __call__(self, **overrides: Any) -> Any:
        from executorlib import SingleNodeExecutor

        options = {"max_workers": 2, "block_allocation": self.block_allocation, **overrides}
        options["resource_dict"] = {**options.get("resource_dict", {}), "cores": RANKS}
        executor = SingleNodeExecutor(**options)
        self._registry.append(executor)
        return RankZeroView(executor)

    def skip_if_reference(self, reason: str) -> None:
        return None

    def skip_if_file_mode(self, reason: str) -> None:
        return None  # socket executors only


@pytest.fixture(params=[pytest.param("one-process", id="mpi2-one-process"), pytest.param("block", id="mpi2-block")])
def executor_factory(
    request: pytest.FixtureRequest, executor_registry: list[concurrent.futures.Executor]
) -> MpiExecutorFactory:
    return MpiExecutorFactory(request.param, executor_registry)

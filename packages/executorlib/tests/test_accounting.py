from __future__ import annotations

import pytest
from executorlib.accounting import available_cores, core_budget, fits, pool_size
from hypothesis import given
from hypothesis import strategies as st

counts = st.none() | st.integers(1, 256)


@given(counts, counts, st.integers(1, 16), st.integers(1, 256))
def test_pool_fits_into_an_explicit_core_budget(max_workers, max_cores, per_worker, cpus) -> None:  # type: ignore[no-untyped-def]
    try:
        workers = pool_size(max_workers, max_cores, per_worker, cpus)
    except ValueError as problem:
        assert "max_cores" in str(problem) or "cores" in str(problem)
        return
    assert workers >= 1
    if max_workers is not None:
        assert workers == max_workers
    if max_cores is not None:
        assert workers * per_worker <= max_cores
    elif max_workers is None:
        assert workers * per_worker <= cpus


@given(counts, counts, st.integers(1, 256))
def test_one_process_mode_is_never_unbounded(max_workers, max_cores, cpus) -> None:  # type: ignore[no-untyped-def]
    budget = core_budget(max_workers, max_cores, cpus)
    assert budget is not None or max_workers is not None


@given(st.integers(0, 64), st.integers(0, 64), st.integers(1, 16), st.integers(1, 64), st.none() | st.integers(1, 64))
def test_admission_never_exceeds_the_budget_unless_idle(used, running, request, budget, max_tasks) -> None:  # type: ignore[no-untyped-def]
    if fits(used, running, request, budget, max_tasks):
        assert used + request <= budget or running == 0
        assert max_tasks is None or running < max_tasks


def test_explicit_workers_beyond_max_cores_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_workers=4 workers of 2 core"):
        pool_size(4, 4, 2, 8)


def test_available_cores_is_positive() -> None:
    assert available_cores() >= 1

"""GPU assignment on one node: pure functions, property-tested."""

from __future__ import annotations

import pytest
from executorlib.errors import ResourceDictError
from executorlib.gpus import block_gpus, check_gpus, gpu_env, gpus_needed, visible_gpus
from executorlib.resources import Resources
from hypothesis import given
from hypothesis import strategies as st

devices = st.lists(st.integers(0, 15).map(str), unique=True, max_size=8)


@given(devices)
def test_cuda_visible_devices_wins_and_is_read_in_order(listed: list[str]) -> None:
    listing = "GPU 0: A100 (UUID: x)\nGPU 1: A100 (UUID: y)\n"
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ",".join(listed)}, listing) == tuple(listed)


def test_nvidia_smi_listing_is_the_fallback_and_minus_one_hides_all() -> None:
    listing = "GPU 0: A100 (UUID: x)\nGPU 1: A100 (UUID: y)\n"
    assert visible_gpus({}, listing) == ("0", "1")
    assert visible_gpus({}, None) == ()
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, listing) == ()
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, listing) == ()


@given(devices, st.integers(1, 4), st.integers(0, 3))
def test_pool_workers_get_disjoint_devices_or_a_clear_error(visible: list[str], workers: int, each: int) -> None:
    if workers * each > len(visible):
        with pytest.raises(ValueError, match=f"need {workers * each} GPUs, but {len(visible)}"):
            block_gpus(workers, each, visible)
        return
    shares = block_gpus(workers, each, visible)
    assert len(shares) == workers and all(len(share) == each for share in shares)
    flat = [device for share in shares for device in share]
    assert len(set(flat)) == len(flat) and set(flat) <= set(visible)


@given(st.integers(1, 4), st.integers(0, 3), devices)
def test_a_call_needs_cores_times_gpus_per_core(cores: int, per_core: int, visible: list[str]) -> None:
    resources = Resources(cores=cores, gpus_per_core=per_core)
    assert gpus_needed(resources) == cores * per_core
    if cores * per_core > len(visible):
        with pytest.raises(ResourceDictError, match=f"needs {cores * per_core} GPU"):
            check_gpus(resources, visible, where="submit()")
    else:
        check_gpus(resources, visible, where="submit()")


def test_a_call_without_gpus_keeps_what_it_inherits() -> None:
    assert gpu_env(()) == {}
    assert gpu_env(("3", "5")) == {"CUDA_VISIBLE_DEVICES": "3,5"}

"""What a file-mode run leaves in its cache directory, where its tasks run, and keys with sub-folders
(compat-1x.md §5.1, §5.2): real TestClusterExecutor processes and real files, as executorlib 1.x users see them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 60


def add(a: int, b: int) -> int:
    return a + b


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def where() -> str:
    return os.getcwd()


def _listing(cache: Path) -> list[str]:
    return sorted(str(path.relative_to(cache)) for path in cache.rglob("*"))


def test_a_chain_of_four_tasks_leaves_four_outputs_and_nothing_else(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor

    cache = tmp_path / "cache"
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        future: Any = 0
        for i in range(4):
            future = exe.submit(add, i, future)
        assert future.result(timeout=TIMEOUT) == 6
        listing = _listing(cache)  # right after the result, inside the with block
    assert len(listing) == 4 and all(name.endswith("_o.h5") for name in listing), listing


def test_the_same_call_twice_is_one_file(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor

    cache = tmp_path / "cache"
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        first, second = exe.submit(add, 1, 2), exe.submit(add, 1, 2)
        assert first.result(timeout=TIMEOUT) == second.result(timeout=TIMEOUT) == 3
        listing = _listing(cache)
    assert len(listing) == 1 and listing[0].endswith("_o.h5"), listing


def test_a_result_and_an_error_leave_exactly_their_outputs(tmp_path: Path) -> None:
    from executorlib.api import TestClusterExecutor

    cache = tmp_path / "cache"
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        good = exe.submit(add, 1, 2, resource_dict={"cache_key": "good"})
        bad = exe.submit(boom, 1, resource_dict={"cache_key": "bad"})
        assert good.result(timeout=TIMEOUT) == 3
        assert isinstance(bad.exception(timeout=TIMEOUT), ValueError)
        assert _listing(cache) == ["bad_o.h5", "good_o.h5"]


def test_a_task_runs_in_the_cache_directory_or_its_cwd_resolved_at_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executorlib.api import TestClusterExecutor

    cache = tmp_path / "cache"
    monkeypatch.chdir(tmp_path)
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        assert exe.submit(where).result(timeout=TIMEOUT) == str(cache)
        relative = exe.submit(where, resource_dict={"cwd": "work/here", "cache_key": "relative"})
        assert relative.result(timeout=TIMEOUT) == str(tmp_path / "work" / "here")
        absolute = exe.submit(where, resource_dict={"cwd": str(tmp_path / "abs"), "cache_key": "absolute"})
        assert absolute.result(timeout=TIMEOUT) == str(tmp_path / "abs")
    # nothing stray under the cache: no <key>/work/here
    assert all(name.endswith("_o.h5") for name in _listing(cache)), _listing(cache)


def test_a_cache_key_with_sub_folders(tmp_path: Path) -> None:
    from executorlib import SingleNodeExecutor, get_cache_data, get_future_from_cache
    from executorlib.api import ResourceDictError, TestClusterExecutor

    cache = tmp_path / "cache"
    with TestClusterExecutor(cache_directory=str(cache)) as exe:
        assert exe.submit(add, 1, 2, resource_dict={"cache_key": "run/j1"}).result(timeout=TIMEOUT) == 3
        for escaping in ("../j2", "/tmp/j3", "run/../../j4", "run//j5"):
            with pytest.raises(ResourceDictError, match="cache key"):
                exe.submit(add, 1, 2, resource_dict={"cache_key": escaping})
    assert _listing(cache) == ["run", "run/j1_o.h5"]
    with SingleNodeExecutor(cache_directory=str(cache)) as exe:
        assert exe.submit(add, 2, 2, resource_dict={"cache_key": "runs/r1"}).result(timeout=TIMEOUT) == 4
    assert (cache / "runs" / "r1_o.h5").is_file()
    records = {record["cache_key"]: record for record in get_cache_data(str(cache))}
    assert set(records) == {"run/j1", "runs/r1"}
    assert records["runs/r1"]["filename"].endswith("runs/r1_o.h5") and records["runs/r1"]["output"] == 4
    assert get_future_from_cache(str(cache), "runs/r1").result(timeout=0) == 4
    assert get_future_from_cache(str(cache), "run/j1").result(timeout=0) == 3
    assert not (tmp_path / "j2_o.h5").exists() and not Path("/tmp/j3_o.h5").exists()

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import prepend_path, thread_env

VARIABLES = {
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
}


@given(st.integers(min_value=1, max_value=10_000))
def test_thread_env_round_trip(threads: int) -> None:
    env = thread_env(threads)
    assert set(env) == VARIABLES
    assert {int(value) for value in env.values()} == {threads}


@pytest.mark.parametrize("threads", [0, -1])
def test_thread_env_rejects_less_than_one(threads: int) -> None:
    with pytest.raises(ValueError, match=f"got {threads}"):
        thread_env(threads)


@pytest.mark.parametrize("threads", [True, 1.0, "2"])
def test_thread_env_rejects_non_int(threads: object) -> None:
    with pytest.raises(TypeError):
        thread_env(threads)  # type: ignore[arg-type]


# Path parts never contain the separator themselves; an empty part is allowed in the input.
parts = st.text(alphabet=st.characters(blacklist_characters=os.pathsep + "\x00"), max_size=6)


@given(st.one_of(st.none(), st.lists(parts, max_size=6).map(os.pathsep.join)), st.lists(parts, max_size=6))
def test_prepend_path_properties(env_value: str | None, entries: list[str]) -> None:
    result = prepend_path(env_value, *entries)
    out = result.split(os.pathsep) if result else []
    assert "" not in out
    assert len(out) == len(set(out))
    wanted = list(dict.fromkeys(e for e in entries if e))
    assert out[: len(wanted)] == wanted
    old = [p for p in (env_value or "").split(os.pathsep) if p]
    assert set(out) == set(wanted) | set(old)


def test_prepend_path_examples() -> None:
    sep = os.pathsep
    assert prepend_path(None) == ""
    assert prepend_path("", "/a") == "/a"
    assert prepend_path(f"/usr/bin{sep}/bin", "/opt/x/bin", "/bin") == f"/opt/x/bin{sep}/bin{sep}/usr/bin"
    assert prepend_path(f"/a{sep}{sep}/a", f"/b{sep}/c") == f"/b{sep}/c{sep}/a"

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import xl_serial
from hypothesis import given
from hypothesis import strategies as st

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.frozensets(st.text(max_size=4), max_size=4),
    lambda c: st.lists(c, max_size=4) | st.tuples(c) | st.sets(st.integers(), max_size=4),
    max_leaves=12,
)


def add(a: Any, b: Any = 0) -> Any:
    return a


@given(values, values)
def test_same_call_same_key(a: Any, b: Any) -> None:
    assert xl_serial.task_key(add, [a], {"b": b}) == xl_serial.task_key(add, (a,), {"b": b})


@given(st.integers(), st.integers())
def test_different_argument_different_key(a: int, b: int) -> None:
    if a != b:
        assert xl_serial.task_key(add, [a]) != xl_serial.task_key(add, [b])


@given(st.dictionaries(st.sampled_from("abcdef"), st.integers(), max_size=6))
def test_keyword_order_does_not_matter(kwargs: dict[str, int]) -> None:
    reversed_kwargs = dict(reversed(list(kwargs.items())))
    assert xl_serial.task_key(add, [1], kwargs) == xl_serial.task_key(add, [1], reversed_kwargs)


def test_key_starts_with_the_function_name_and_is_filename_safe() -> None:
    key = xl_serial.task_key(add, [1])
    assert key.startswith("add") and len(key) == len("add") + 32

    class Scaler:
        def __call__(self, x: int) -> int:
            return x

    assert xl_serial.task_key(Scaler(), [1]).startswith("Scaler")
    assert xl_serial.task_key(lambda x: x, [1]).startswith("_lambda_")


_SCRIPT = textwrap.dedent(
    """
    import xl_serial

    def work(x, tags):
        return x if x in {"alpha", "beta", "gamma"} else tags

    print(xl_serial.task_key(work, ["alpha", {"p", "q", "r", "s"}], {"z": frozenset({"u", "v"})}))
    """
)


def test_key_is_stable_across_interpreter_runs_and_hash_seeds(tmp_path: Any) -> None:
    script = tmp_path / "keyed.py"
    script.write_text(_SCRIPT)
    keys = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        keys.add(out.stdout.strip())
    assert len(keys) == 1, keys


def test_notebook_process_id_does_not_change_the_key() -> None:
    def make(pid: int) -> Any:
        namespace: dict[str, Any] = {"__name__": "__main__"}
        code = compile("def cell(x):\n    return x\n", f"/tmp/ipykernel_{pid}/3141592653.py", "exec")
        exec(code, namespace)
        return namespace["cell"]

    assert xl_serial.task_key(make(111), [1]) == xl_serial.task_key(make(98765), [1])

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


_HELPER_MODULE = textwrap.dedent(
    """
    import time

    def count_and_add(path, x, y):
        with open(path, "a") as handle:
            handle.write("ran\\n")
        return x + y
    """
)

_KEY_OF_HELPER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import helper_module
    import xl_serial
    xl_serial.register_by_value(helper_module)
    print(xl_serial.task_key(helper_module.count_and_add, ["/tmp/marker", 1, 2]))
    """
)


def test_key_is_the_same_whether_the_module_was_compiled_or_loaded_from_its_pyc(tmp_path: Any) -> None:
    """A helper module pickled by value (register_by_value, or the caller's own module) is compiled from source
    on the first run and loaded from __pycache__ on the next: its code objects then share strings differently
    (co_filename, for one), which must not change the key, or the cache misses on every second run."""
    (tmp_path / "helper_module.py").write_text(_HELPER_MODULE)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    keys = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", _KEY_OF_HELPER, str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        keys.append(out.stdout.strip())
    assert list((tmp_path / "__pycache__").glob("helper_module.*.pyc")), "the second run loaded the .pyc"
    assert keys[0] == keys[1]


@given(st.lists(st.text(min_size=1, max_size=8) | st.binary(min_size=1, max_size=8), min_size=1, max_size=5))
def test_key_does_not_depend_on_which_equal_values_are_one_object(values: list[Any]) -> None:
    shared = [values[0]] * 3 + values
    copied = [_copy(values[0]) for _ in range(3)] + [_copy(v) for v in values]
    assert all(a == b for a, b in zip(shared, copied, strict=True))
    assert xl_serial.canonical_bytes((tuple(shared), shared)) == xl_serial.canonical_bytes((tuple(copied), copied))


def _copy(value: Any) -> Any:
    """An equal value that is another object (slicing an exact str or bytes returns the same object)."""
    return value[:1] + value[1:] if len(value) > 1 else type(value)(value * 2)[: len(value)]


def test_shared_parts_are_written_once() -> None:
    tree: Any = ("leaf",)
    for _ in range(40):  # 2**40 leaves if every reference were written out
        tree = (tree, [tree])
    assert len(xl_serial.canonical_bytes(tree)) < 10_000


def test_self_referencing_structures_still_have_a_key() -> None:
    looped: list[Any] = ["a"]
    looped.append(looped)
    holder: dict[str, Any] = {}
    holder["me"] = ("x", holder)
    assert xl_serial.task_key(add, [looped, holder]) == xl_serial.task_key(add, [looped, holder])

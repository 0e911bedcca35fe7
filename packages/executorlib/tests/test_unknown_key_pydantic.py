"""An unknown ``resource_dict`` key: pydantic's ValidationError with our message where pydantic is importable (as
executorlib 1.x raised), a ResourceDictError (ValueError and TypeError) where it is not; pydantic is imported
only when such an error is raised."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pydantic
import pytest
from executorlib import SingleNodeExecutor
from executorlib.errors import ResourceDictError, unknown_key_error
from executorlib.resources import KEYS
from hypothesis import given
from hypothesis import strategies as st

TIMEOUT = 60


def inc(x: int) -> int:
    return x + 1


def assert_our_message(text: str, where: str) -> None:
    assert where in text and "'core'" in text and "Did you mean 'cores'?" in text
    assert all(key in text for key in KEYS), text


def test_an_unknown_key_at_construction_is_a_validation_error_with_our_message() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        SingleNodeExecutor(resource_dict={"core": 2})
    assert_our_message(str(info.value), "SingleNodeExecutor(resource_dict=...)")
    (line,) = info.value.errors()
    assert line["type"] == "extra_forbidden" and line["loc"] == ("core",) and line["input"] == 2  # 1.x's shape


def test_an_unknown_key_at_submit_is_a_validation_error_and_the_executor_stays_usable() -> None:
    with SingleNodeExecutor(max_workers=1) as exe:
        with pytest.raises(pydantic.ValidationError) as info:
            exe.submit(inc, 1, resource_dict={"core": 2})
        assert_our_message(str(info.value), "submit(..., resource_dict=...)")
        assert exe.submit(inc, 1, resource_dict={"cores": 1}).result(timeout=TIMEOUT) == 2


def test_a_constructor_argument_as_a_key_is_unknown_to_the_resource_model_too() -> None:
    with pytest.raises(pydantic.ValidationError, match="constructor argument: SingleNodeExecutor"):
        SingleNodeExecutor(resource_dict={"openmpi_oversubscribe": True})


def test_a_bad_value_of_a_known_key_stays_a_resource_dict_error() -> None:
    with pytest.raises(ResourceDictError, match=r"resource_dict\['cores'\] = 'two'"):
        SingleNodeExecutor(resource_dict={"cores": "two"})


@given(key=st.text(min_size=1, max_size=20), value=st.one_of(st.integers(), st.text(), st.none()), message=st.text())
def test_the_message_survives_verbatim(key: str, value: Any, message: str) -> None:
    error = unknown_key_error(ResourceDictError(message), key, value)
    assert isinstance(error, pydantic.ValidationError) and isinstance(error, ValueError)
    (line,) = error.errors()
    assert line["msg"] == message and line["loc"] == (key,) and message in str(error)


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_pydantic_it_is_a_resource_dict_error_also_a_type_error() -> None:
    out = run_python(
        """
        import sys
        sys.modules["pydantic"] = None  # blocks the import: as if pydantic were not installed
        from executorlib import SingleNodeExecutor
        from executorlib.errors import ResourceDictError
        for attempt in ("construct", "submit"):
            try:
                if attempt == "construct":
                    SingleNodeExecutor(resource_dict={"core": 2})
                else:
                    with SingleNodeExecutor(plot_dependency_graph=True) as exe:
                        exe.submit(print, 1, resource_dict={"core": 2})
            except ResourceDictError as error:
                assert isinstance(error, TypeError) and isinstance(error, ValueError)
                print(attempt, error)
        """
    )
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["construct", "submit"]
    assert_our_message(lines[0], "SingleNodeExecutor(resource_dict=...)")
    assert_our_message(lines[1], "submit(..., resource_dict=...)")


def test_valid_calls_do_not_import_pydantic() -> None:
    out = run_python(
        """
        import sys
        from executorlib import SingleNodeExecutor
        with SingleNodeExecutor(resource_dict={"cores": 1}, plot_dependency_graph=True) as exe:
            exe.submit(print, 1, resource_dict={"cores": 1, "cache_key": "k"})
            try:
                exe.submit(print, 1, resource_dict={"cores": "two"})
            except ValueError:
                pass
        print("pydantic" in sys.modules)
        """
    )
    assert out.strip() == "False"

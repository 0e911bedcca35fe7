import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import python_module_argv

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
modules = st.lists(identifiers, min_size=1, max_size=4).map(".".join)
arguments = st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=20), max_size=6)


@given(modules, arguments, st.one_of(st.none(), st.text(min_size=1, max_size=30)))
def test_argv_shape(module: str, args: list[str], python: str | None) -> None:
    argv = python_module_argv(module, args, python=python)
    assert argv == [python if python is not None else sys.executable, "-m", module, *args]


def test_defaults_to_the_running_interpreter() -> None:
    assert python_module_argv("xl_comm.worker") == [sys.executable, "-m", "xl_comm.worker"]


@pytest.mark.parametrize("module", ["", "a..b", ".a", "a.", "1abc", "a.b-c", "a b", "xl_comm/worker"])
def test_bad_module_names_the_value(module: str) -> None:
    with pytest.raises(ValueError, match="dotted Python identifier") as info:
        python_module_argv(module)
    assert repr(module) in str(info.value)


def test_a_string_of_args_is_rejected() -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        python_module_argv("m", "--port")


def test_non_string_arg_is_rejected() -> None:
    with pytest.raises(TypeError, match="5555"):
        python_module_argv("m", ["--port", 5555])  # type: ignore[list-item]


def test_empty_interpreter_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "")
    with pytest.raises(ValueError, match="python="):
        python_module_argv("m")

"""The log switch (executorlib.logs): level names, the handler it installs on every project logger, and the
environment variable read at import."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from executorlib import log_to_stderr
from executorlib.logs import ENV_VAR, LOGGERS, parse_level
from hypothesis import given
from hypothesis import strategies as st

NAMES = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@pytest.fixture(autouse=True)
def _switch_off_afterwards() -> Iterator[None]:
    yield
    log_to_stderr("off")


@given(st.sampled_from(sorted(NAMES)), st.lists(st.booleans(), min_size=7, max_size=7), st.sampled_from(["", " "]))
def test_level_names_in_any_case(name: str, upper: list[bool], pad: str) -> None:
    spelled = "".join(c.upper() if up else c for c, up in zip(name, upper, strict=False))
    assert parse_level(pad + spelled + pad) == NAMES[name]


@given(st.integers(min_value=0, max_value=100))
def test_level_numbers_pass_through(number: int) -> None:
    assert parse_level(number) == number


@given(st.text(max_size=12).filter(lambda t: t.strip().lower() not in {*NAMES, "off"}))
def test_an_unknown_name_is_refused_naming_it_and_the_choices(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_level(text)
    assert repr(text) in str(caught.value) and "debug, info, warning, error, off" in str(caught.value)


@pytest.mark.parametrize("bad", [-1, True, 1.5, None])
def test_other_values_are_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="level"):
        parse_level(bad)  # type: ignore[arg-type]


def test_the_handler_is_on_every_project_logger_once_and_off_removes_it() -> None:
    first = log_to_stderr("info")
    second = log_to_stderr("DEBUG")
    for name in LOGGERS:
        logger = logging.getLogger(name)
        assert second in logger.handlers and first not in logger.handlers
        assert logger.level == logging.DEBUG
    assert log_to_stderr("off") is None
    for name in LOGGERS:
        assert second not in logging.getLogger(name).handlers
        assert logging.getLogger(name).level == logging.NOTSET


def _run_python(code: str, env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if env_value is not None:
        env[ENV_VAR] = env_value
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_environment_variable_switches_the_log_on_at_import() -> None:
    code = "import logging, executorlib; logging.getLogger('xl_spawn.process').debug('hello from xl_spawn')"
    on = _run_python(code, "debug")
    assert on.returncode == 0, on.stderr
    assert "xl_spawn.process DEBUG [MainThread] hello from xl_spawn" in on.stderr
    off = _run_python(code, None)
    assert off.returncode == 0 and off.stderr == ""


def test_a_bad_environment_value_warns_and_leaves_the_log_off() -> None:
    done = _run_python("import logging, executorlib; logging.getLogger('executorlib').info('nothing')", "loud")
    assert done.returncode == 0
    assert "RuntimeWarning: EXECUTORLIB_LOG='loud' is ignored: unknown log level 'loud'" in done.stderr
    assert "nothing" not in done.stderr

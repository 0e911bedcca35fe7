from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from executorlib.errors import ResourceDictError
from executorlib.executors.single import SINGLE_NODE_RULES
from executorlib.resources import DEFAULTS, KEYS, ExecutorRules, Resources, merge, parse_resource_dict
from hypothesis import given
from hypothesis import strategies as st

valid_values: dict[str, st.SearchStrategy[Any]] = {
    "cores": st.integers(1, 512),
    "threads_per_core": st.integers(1, 64),
    "gpus_per_core": st.integers(0, 8),
    "cwd": st.none() | st.text(min_size=1, max_size=10),
    # "." and ".." name no file and ".tmp-" marks unfinished files: check_key rejects them, so they are not valid.
    "cache_key": st.none()
    | st.from_regex(r"[A-Za-z0-9_.-]{1,10}", fullmatch=True).filter(
        lambda k: k not in (".", "..") and ".tmp-" not in k
    ),
    "cache_directory": st.none() | st.text(min_size=1, max_size=10),
    "num_nodes": st.none() | st.integers(1, 64),
    "exclusive": st.booleans(),
    "error_log_file": st.none() | st.text(min_size=1, max_size=10),
    "run_time_max": st.none() | st.integers(1, 10**6),
    "priority": st.none() | st.integers(-100, 100),
    "slurm_cmd_args": st.lists(st.text(max_size=5), max_size=3),
    "submission_template": st.none() | st.text(min_size=1, max_size=20),
}
resource_dicts = st.fixed_dictionaries({}, optional=valid_values)


def test_the_thirteen_upstream_keys() -> None:
    assert set(KEYS) == set(valid_values) and len(KEYS) == 13


@given(resource_dicts)
def test_valid_dicts_parse_and_merge_onto_the_defaults(resource_dict: dict[str, Any]) -> None:
    resources = merge(DEFAULTS, parse_resource_dict(resource_dict, where="test"))
    for key, value in resource_dict.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert getattr(resources, key) == expected
    for key in set(KEYS) - set(resource_dict):
        assert getattr(resources, key) == getattr(DEFAULTS, key)


@given(resource_dicts, resource_dicts)
def test_per_task_overrides_win_key_by_key(base: dict[str, Any], task: dict[str, Any]) -> None:
    executor_level = merge(DEFAULTS, parse_resource_dict(base, where="test"))
    combined = merge(executor_level, parse_resource_dict(task, where="test"))
    for key in KEYS:
        source = task if key in task else base if key in base else None
        if source is None:
            assert getattr(combined, key) == getattr(DEFAULTS, key)


@given(
    st.text(min_size=1, max_size=12).filter(
        lambda k: k not in KEYS and k not in ("openmpi_oversubscribe", "max_cores", "max_workers")
    )
)
def test_unknown_keys_list_every_valid_key(key: str) -> None:
    with pytest.raises(ValueError) as info:  # pydantic's ValidationError where pydantic is installed
        parse_resource_dict({key: 1}, where="test")
    message = str(info.value)
    assert repr(key) in message and all(valid in message for valid in KEYS)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cores", "two"),
        ("cores", 0),
        ("cores", True),
        ("threads_per_core", -1),
        ("gpus_per_core", 1.5),
        ("cwd", 5),
        ("exclusive", "yes"),
        ("slurm_cmd_args", "--x"),
        ("cache_key", "../b"),
        ("cache_key", "/abs/b"),
        ("cache_key", "a//b"),
        ("cache_key", "a\\b"),
        ("run_time_max", 0),
    ],
)
def test_bad_values_name_key_value_and_an_example(key: str, value: Any) -> None:
    with pytest.raises(ResourceDictError) as info:
        parse_resource_dict({key: value}, where="here")
    message = str(info.value)
    assert (message.startswith("here:") and repr(key) in message and repr(value) in message and "e.g." in message) or (
        key == "submission_template"
    )


def test_a_misspelling_suggests_the_key_and_moved_keys_point_to_the_constructor() -> None:
    with pytest.raises(ValueError, match="Did you mean 'cores'"):  # a ValidationError where pydantic is installed
        parse_resource_dict({"corse": 2}, where="test")
    with pytest.raises(ValueError, match="constructor argument"):
        parse_resource_dict({"openmpi_oversubscribe": True}, where="test")


def test_a_cache_key_with_sub_folders_is_accepted() -> None:
    assert parse_resource_dict({"cache_key": "runs/r1"}, where="here") == {"cache_key": "runs/r1"}


def test_the_error_type_is_both_value_and_type_error() -> None:
    assert issubclass(ResourceDictError, ValueError) and issubclass(ResourceDictError, TypeError)


@given(st.sampled_from(sorted(SINGLE_NODE_RULES.unsupported)), st.data())
def test_single_node_rejects_every_key_it_cannot_honour(key: str, data: st.DataObject) -> None:
    value = data.draw(
        valid_values[key].filter(lambda v: (tuple(v) if isinstance(v, list) else v) != getattr(DEFAULTS, key))
    )
    resources = merge(DEFAULTS, parse_resource_dict({key: value}, where="test"))
    with pytest.raises(ResourceDictError) as info:
        SINGLE_NODE_RULES.check(resources, where="test")
    assert repr(key) in str(info.value) and "SingleNodeExecutor" in str(info.value)


def test_defaults_pass_every_backend_rule() -> None:
    SINGLE_NODE_RULES.check(DEFAULTS, where="test")
    ExecutorRules("X", {k: "no" for k in KEYS}).check(DEFAULTS, where="test")


@given(st.integers(1, 64), st.integers(1, 64))
def test_cpus_are_cores_times_threads(cores: int, threads: int) -> None:
    assert dataclasses.replace(Resources(), cores=cores, threads_per_core=threads).cpus == cores * threads

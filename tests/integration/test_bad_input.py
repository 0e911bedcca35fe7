"""Bad input is rejected at construction or at ``submit()`` with the right type and a message that speaks.

``ResourceDictError`` subclasses both ValueError and TypeError; its message names the key and the repr of
the bad value, and for an unknown key lists the valid keys. An unknown key raises pydantic's ValidationError
(with that message) instead, as executorlib 1.x did, since the test environment has pydantic installed.
"""

from __future__ import annotations

import re

import pytest
from xl_test_helpers import add

TIMEOUT = 60

VALID_KEYS = [
    "cores",
    "threads_per_core",
    "gpus_per_core",
    "cwd",
    "cache_key",
    "cache_directory",
    "num_nodes",
    "exclusive",
    "error_log_file",
    "run_time_max",
    "priority",
    "slurm_cmd_args",
    "submission_template",
]

# resource_dict, words the message must contain
BAD_RESOURCE_DICTS = {
    "cores-str": ({"cores": "two"}, ["cores", "'two'"]),
    "cores-zero": ({"cores": 0}, ["cores", "0"]),
    "threads-negative": ({"threads_per_core": -1}, ["threads_per_core", "-1"]),
    "cwd-int": ({"cwd": 5}, ["cwd", "5"]),
    "typo": ({"corse": 2}, ["corse", *VALID_KEYS]),
    "constructor-only": ({"openmpi_oversubscribe": True}, ["openmpi_oversubscribe"]),
    # known keys the single-node backend cannot honour with a non-default value
    "num_nodes": ({"num_nodes": 2}, ["num_nodes", "2"]),
    "exclusive": ({"exclusive": True}, ["exclusive", "True"]),
    "priority": ({"priority": 1}, ["priority", "1"]),
    "slurm_cmd_args": ({"slurm_cmd_args": ["--x"]}, ["slurm_cmd_args", "['--x']"]),
    "submission_template": ({"submission_template": "x"}, ["submission_template", "'x'"]),
    "run_time_max-zero": ({"run_time_max": 0}, ["run_time_max", "0"]),
}


# keys no resource model knows: pydantic's ValidationError (pydantic is installed here, as 1.x raised it)
UNKNOWN_KEY_CASES = {"typo", "constructor-only"}


@pytest.fixture
def resource_dict_error(executorlib_api):
    return executorlib_api.ResourceDictError


def expected_error(case, resource_dict_error):
    import pydantic

    return pydantic.ValidationError if case in UNKNOWN_KEY_CASES else resource_dict_error


def assert_mentions(exc_info, words):
    message = str(exc_info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"{missing} not in the message {message!r}"


def assert_special_hints(case, exc_info):
    message = str(exc_info.value)
    if case == "typo":
        suggestion = r"(did you mean|perhaps|maybe|closest|instead|suggest)\W+\w*\W*'?cores\b"
        assert re.search(suggestion, message, re.IGNORECASE), f"no suggestion of 'cores' in {message!r}"
    if case == "constructor-only":
        assert re.search(r"constructor|SingleNodeExecutor\(|argument", message), (
            f"the message does not point to the constructor argument: {message!r}"
        )


def test_resource_dict_error_is_value_and_type_error(resource_dict_error):
    assert issubclass(resource_dict_error, ValueError)
    assert issubclass(resource_dict_error, TypeError)


# --- resource_dict ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_RESOURCE_DICTS))
def test_bad_resource_dict_at_construction(make_executor, resource_dict_error, case):
    resource_dict, words = BAD_RESOURCE_DICTS[case]
    with pytest.raises(expected_error(case, resource_dict_error)) as exc_info:
        make_executor(max_workers=1, resource_dict=resource_dict)
    assert_mentions(exc_info, words)
    assert_special_hints(case, exc_info)


@pytest.mark.parametrize("case", list(BAD_RESOURCE_DICTS))
def test_bad_resource_dict_at_submit(make_executor, resource_dict_error, case):
    resource_dict, words = BAD_RESOURCE_DICTS[case]
    exe = make_executor(max_workers=1)
    with pytest.raises(expected_error(case, resource_dict_error)) as exc_info:
        exe.submit(add, 1, 2, resource_dict=resource_dict)
    assert_mentions(exc_info, words)
    assert_special_hints(case, exc_info)


def test_bad_resource_dict_at_construction_of_a_block_executor(make_executor, resource_dict_error):
    with pytest.raises(expected_error("typo", resource_dict_error), match="corse"):
        make_executor(max_workers=1, block_allocation=True, resource_dict={"corse": 1})


def test_executor_still_works_after_a_rejected_submit(make_executor, resource_dict_error):
    exe = make_executor(max_workers=1)
    with pytest.raises(resource_dict_error):
        exe.submit(add, 1, 2, resource_dict={"cores": "two"})
    assert exe.submit(add, 1, 2, resource_dict={"cores": 1}).result(timeout=TIMEOUT) == 3


def test_cores_above_max_cores_rejected_at_submit(make_executor):
    exe = make_executor(max_cores=2)
    with pytest.raises(ValueError, match="cores") as exc_info:
        exe.submit(add, 1, 2, resource_dict={"cores": 3})
    assert "3" in str(exc_info.value)


@pytest.mark.parametrize("key", ["cores", "threads_per_core", "cwd"])
def test_block_allocation_rejects_per_call_resources(make_executor, resource_dict_error, tmp_path, key):
    resource_dict = {key: {"cores": 2, "threads_per_core": 2, "cwd": str(tmp_path)}[key]}
    exe = make_executor(max_workers=1, block_allocation=True)
    with pytest.raises(resource_dict_error) as exc_info:
        exe.submit(add, 1, 2, resource_dict=resource_dict)
    assert_mentions(exc_info, [key])
    assert exe.submit(add, 1, 2).result(timeout=TIMEOUT) == 3


# --- constructor arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
@pytest.mark.parametrize(
    ("max_workers", "error"),
    [(0, ValueError), (-1, ValueError), ("2", TypeError)],
    ids=["zero", "negative", "str"],
)
def test_bad_max_workers(make_executor, block_allocation, max_workers, error):
    with pytest.raises(error, match="max_workers"):
        make_executor(max_workers=max_workers, block_allocation=block_allocation)


@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
def test_zero_max_cores(make_executor, block_allocation):
    with pytest.raises(ValueError, match="max_cores"):
        make_executor(max_cores=0, block_allocation=block_allocation)


def test_init_function_requires_block_allocation(make_executor):
    with pytest.raises(ValueError) as exc_info:
        make_executor(max_workers=1, init_function=dict)
    message = str(exc_info.value)
    assert message.strip(), "the error must say what is wrong"
    assert "init_function" in message and "block_allocation" in message, message


def test_init_function_must_be_callable(make_executor):
    with pytest.raises(TypeError, match="init_function"):
        make_executor(max_workers=1, block_allocation=True, init_function={"a": 1})


def test_restart_limit_requires_block_allocation(make_executor):
    with pytest.raises(ValueError, match="restart_limit") as exc_info:
        make_executor(max_workers=1, restart_limit=1)
    assert "block_allocation" in str(exc_info.value)


@pytest.mark.parametrize("block_allocation", [False, True], ids=["one-process", "block"])
def test_negative_restart_limit(make_executor, block_allocation):
    with pytest.raises(ValueError, match="restart_limit"):
        make_executor(max_workers=1, block_allocation=block_allocation, restart_limit=-1)

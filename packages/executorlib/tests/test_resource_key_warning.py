"""File mode's warning for a resource_dict key nobody reads (compat-1x.md §12): 1.x's text, every unknown key, the
closest valid key, and no warning for a queue key or a variable of the template in use."""

from __future__ import annotations

import warnings

import pytest
from executorlib.errors import ResourceKeyWarning
from executorlib.resources import KEYS, QUEUE_KEYS, check_template_keys, unknown_keys_message
from hypothesis import given
from hypothesis import strategies as st

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@given(st.lists(NAMES, min_size=1, max_size=4, unique=True), st.frozensets(NAMES, max_size=4))
def test_the_message_names_every_unknown_key_in_1x_words(unknown: list[str], variables: frozenset[str]) -> None:
    message = unknown_keys_message(unknown, variables, where="here", template="T")
    assert message.startswith(f"here: The following keys are not recognized and cannot be validated: {unknown}")
    assert "Fix the spelling" in message and "submission_template" in message


@given(st.sampled_from(sorted(KEYS)))
def test_a_key_with_its_last_letter_dropped_suggests_the_key(key: str) -> None:
    typo = key[:-1]
    message = unknown_keys_message([typo], [], where="here", template="T")
    assert "Did you mean" in message and repr(typo) in message


@given(st.dictionaries(st.sampled_from(QUEUE_KEYS) | st.sampled_from(["account", "qos"]), st.integers(), max_size=4))
def test_queue_keys_and_template_variables_pass_silently(extras: dict[str, int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_template_keys(extras, {"account", "qos"}, where="here", template="T")
        check_template_keys({"anything": 1}, None, where="here", template="T")  # variables unknown: nothing to check


def test_an_unknown_key_warns_with_a_user_warning() -> None:
    with pytest.warns(ResourceKeyWarning, match=r"\['core'\].*Did you mean 'cores'\?"):
        check_template_keys({"core": 40}, {"cores"}, where="here", template="T")
    assert issubclass(ResourceKeyWarning, UserWarning)

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn import describe_returncode

REAL_SIGNALS = sorted(signal.Signals, key=int)


@given(st.integers(min_value=-64, max_value=255))
def test_every_status_renders_with_its_number(returncode: int) -> None:
    text = describe_returncode(returncode)
    assert text
    assert str(returncode) in text


@pytest.mark.parametrize("sig", REAL_SIGNALS, ids=lambda s: s.name)
def test_negative_status_names_the_signal(sig: signal.Signals) -> None:
    assert describe_returncode(-int(sig)) == f"{sig.name}({-int(sig)})"


@pytest.mark.parametrize("sig", [s for s in REAL_SIGNALS if 1 <= s <= 31], ids=lambda s: s.name)
def test_shell_style_status_names_the_signal(sig: signal.Signals) -> None:
    assert describe_returncode(128 + int(sig)) == f"EXIT({128 + int(sig)}, i.e. {sig.name})"


def test_examples() -> None:
    assert describe_returncode(-9) == "SIGKILL(-9)"
    assert describe_returncode(-11) == "SIGSEGV(-11)"
    assert describe_returncode(0) == "EXIT(0)"
    assert describe_returncode(3) == "EXIT(3)"
    assert describe_returncode(137) == "EXIT(137, i.e. SIGKILL)"
    assert describe_returncode(139) == "EXIT(139, i.e. SIGSEGV)"


@given(st.integers(min_value=0, max_value=255).filter(lambda n: not 129 <= n <= 159))
def test_plain_exit_status(returncode: int) -> None:
    assert describe_returncode(returncode) == f"EXIT({returncode})"


@given(st.integers(max_value=-65))
def test_unknown_signal_still_renders(returncode: int) -> None:
    assert describe_returncode(returncode) == f"SIG?({returncode})"


@pytest.mark.skipif(not hasattr(signal, "SIGRTMIN"), reason="no real-time signals on this platform")
def test_realtime_signals_are_named() -> None:
    assert describe_returncode(-(signal.SIGRTMIN + 2)) == f"SIGRTMIN+2({-(signal.SIGRTMIN + 2)})"


def test_non_int_is_rejected() -> None:
    with pytest.raises(TypeError, match="'9'"):
        describe_returncode("9")  # type: ignore[arg-type]

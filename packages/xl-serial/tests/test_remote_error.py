from __future__ import annotations

import threading

import pytest
import xl_serial
from hypothesis import given
from hypothesis import strategies as st


def _raise(exc: BaseException) -> xl_serial.RemoteError:
    try:
        raise exc
    except BaseException as caught:
        return xl_serial.capture(caught, origin="worker 7 (pid 1 on node)")


@given(st.sampled_from([ValueError, KeyError, RuntimeError, ZeroDivisionError, OSError]), st.text(max_size=20))
def test_rebuilt_exception_keeps_type_message_and_remote_frames(kind: type[Exception], message: str) -> None:
    record = xl_serial.loads(xl_serial.dumps(_raise(kind(message))))
    exc = record.rebuild()
    assert type(exc) is kind
    assert exc.args == (message,)
    assert isinstance(exc.__cause__, xl_serial.RemoteTraceback)
    assert "worker 7" in str(exc.__cause__) and "_raise" in str(exc.__cause__)


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("has a lock")
        self.lock = threading.Lock()


def test_unpicklable_exception_becomes_a_readable_stand_in() -> None:
    record = xl_serial.loads(xl_serial.dumps(_raise(Unpicklable())))
    exc = record.rebuild()
    assert isinstance(exc, xl_serial.RemoteException)
    assert "Unpicklable" in str(exc) and "has a lock" in str(exc)
    with pytest.raises(xl_serial.RemoteException):
        raise exc


def test_error_report_names_the_call_and_ends_with_the_traceback() -> None:
    from xl_serial import error_report

    try:
        int("x")
    except ValueError as error:
        report = error_report(int, ("x",), {"base": 10}, error)
    head, _, rest = report.partition("Traceback")
    assert head == "function: <class 'int'>\nargs: ('x',)\nkwargs: {'base': 10}\n"
    assert "ValueError: invalid literal" in rest and report.endswith("\n\n")  # a blank line between reports

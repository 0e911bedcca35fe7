"""Public names."""

from __future__ import annotations

import pytest
import xl_comm


def test_public_names() -> None:
    # executorlib reaches xl-comm only through these (an import-linter contract forbids its submodules)
    for name in xl_comm.__all__:
        assert getattr(xl_comm, name) is not None
        assert name in dir(xl_comm)
    assert {"EXIT_TEAM_ABORTED", "KEY_FILE_ENV", "Kind", "discard_key_file", "pack_task"} <= set(xl_comm.__all__)
    assert xl_comm.__version__


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        xl_comm.no_such_name  # type: ignore[attr-defined]  # noqa: B018


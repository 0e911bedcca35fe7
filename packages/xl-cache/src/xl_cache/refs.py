"""References to other tasks' outputs inside a pending task's arguments (file-mode dependencies)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from xl_cache.errors import CachePendingError
from xl_cache.tasks import input_path, load_result, output_path


@dataclass(frozen=True, slots=True)
class OutputRef:
    """Stands for the output of task ``key`` in ``cache_directory`` (optionally ``output[selector]``).

    The file-mode worker replaces it by that output before the call; if that task failed, the dependent fails
    with the same exception. Its pickle names the upstream file, so a dependent's key depends on the upstream's
    key and cache path, not on its value.
    """

    cache_directory: str
    key: str
    selector: Any = None

    def resolve(self) -> Any:
        outcome = load_result(self.cache_directory, self.key)
        if outcome is None:
            where = input_path(self.cache_directory, self.key)
            state = "is still pending" if os.path.exists(where) else "does not exist"
            raise CachePendingError(
                f"the argument taken from task {self.key!r} is not available: its output "
                f"{output_path(self.cache_directory, self.key)} {state} (did its job die?)"
            )
        value = outcome.result()
        if self.selector is None or value is None:
            return value
        return value[self.selector]


def resolve_refs(obj: Any) -> Any:
    """``obj`` with every :class:`OutputRef` in nested lists, tuples, dict values and sets replaced by its value.

    Containers without references come back unchanged (the same object).
    """
    if isinstance(obj, OutputRef):
        return obj.resolve()
    if isinstance(obj, list):
        items = [resolve_refs(item) for item in obj]
        return obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
    if isinstance(obj, tuple):
        items = [resolve_refs(item) for item in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        values = {k: resolve_refs(v) for k, v in obj.items()}
        return obj if all(values[k] is v for k, v in obj.items()) else values
    if isinstance(obj, set | frozenset):
        items = [resolve_refs(item) for item in obj]
        return obj if all(a is b for a, b in zip(items, obj, strict=True)) else type(obj)(items)
    return obj

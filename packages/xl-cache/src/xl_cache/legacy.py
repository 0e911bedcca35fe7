"""Files written by executorlib 1.x (format 0): no stamp, every dataset a cloudpickle in a 1-D uint8 dataset.

Such a file is read as an entry of format 0: its key comes from its name, its status from which datasets it
has, its runtime, queue id and error log file from their small pickles. Those three are read by
:func:`plain_value`, which refuses any pickle that names a class or a function, so listing a 1.x directory
never runs code from it; the function, inputs and output are unpickled only when asked for, as for our files.
There are no checksums and no versions to check: a pickle that fails to load is reported with the file.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from typing import Any

from xl_cache.h5image import Reader
from xl_cache.layout import Meta, Stamp, Status, parse_name

LEGACY_FORMAT = 0
#: What a format-0 file says about the versions that wrote it: nothing.
UNKNOWN = "unknown"
LEGACY_STAMP = Stamp(LEGACY_FORMAT, UNKNOWN, UNKNOWN)


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles numbers, strings and containers of them; anything that imports is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a plain value was expected, the pickle names {module}.{name}")


def plain_value(data: bytes) -> Any:
    """The value of a pickle of a plain value (float, int, str, None, ...); ``UnpicklingError`` for any other."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def function_name(data: bytes) -> str:
    """The name of the function a cloudpickle holds, read from the pickle's opcodes without loading it (pure).

    cloudpickle writes a function of an importable module as a reference (its module and name, then a global
    lookup) and any other function by value, with a state holding ``__qualname__``. Returns ``""`` when neither
    shape is found.
    """
    strings: list[str] = []
    references: list[str] = []
    memo: dict[int, str | None] = {}
    last: str | None = None  # the string the last opcode pushed, if it pushed one
    try:
        for opcode, arg, _ in pickletools.genops(data):
            pushed: str | None = None
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                pushed = arg
            elif opcode.name in ("BINGET", "LONG_BINGET") and isinstance(arg, int):
                pushed = memo.get(arg)
            elif opcode.name == "MEMOIZE":
                memo[len(memo)] = last
            elif opcode.name == "STACK_GLOBAL" and strings:
                references.append(strings[-1])
            elif opcode.name == "GLOBAL" and isinstance(arg, str):
                references.append(arg.split(" ", 1)[-1])
            if pushed is not None:
                if strings and strings[-1] == "__qualname__":
                    return pushed
                strings.append(pushed)
            if opcode.name != "MEMOIZE":
                last = pushed
    except Exception:
        return ""
    # one global and nothing named by value: the pickle is that reference
    return references[0] if len(references) == 1 else ""


def status_of(names: set[str]) -> Status:
    """A format-0 file's status from its datasets: the output or the error decides, else it is pending."""
    if "output" in names:
        return "done"
    if "error" in names:
        return "error"
    return "pending"


def legacy_meta(reader: Reader, key: str | None) -> Meta:
    """The stamp-less file ``reader`` described as a :class:`Meta` of format 0; ``ValueError`` if it is not a
    1.x cache file either (it has no ``function`` dataset)."""
    names = set(reader.names())
    if "function" not in names:
        raise ValueError("it has neither an xl-cache stamp nor executorlib 1.x's 'function' dataset")
    if key is None:
        parsed = parse_name(os.path.basename(reader.path))
        key = parsed[0] if parsed is not None else os.path.basename(reader.path)
    small: dict[str, Any] = {}
    for name in ("runtime", "queue_id", "error_log_file"):
        if name in names:
            small[name] = plain_value(reader.read_bytes(name))
    runtime, queue_id, error_log_file = small.get("runtime"), small.get("queue_id"), small.get("error_log_file")
    try:
        created = os.stat(reader.path).st_mtime
    except OSError:
        created = 0.0
    return Meta(
        stamp=LEGACY_STAMP,
        key=key,
        function=function_name(reader.read_bytes("function")),
        created=created,
        status=status_of(names),
        runtime=float(runtime) if isinstance(runtime, int | float) and not isinstance(runtime, bool) else None,
        queue_id=queue_id if isinstance(queue_id, int) and not isinstance(queue_id, bool) else None,
        error_log_file=error_log_file if isinstance(error_log_file, str) else None,
    )

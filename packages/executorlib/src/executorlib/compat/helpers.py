"""Small helpers of executorlib 1.x's API: worker script paths, emptying a task queue, pickling by value."""

from __future__ import annotations

import contextlib
import os
import queue
import sys
from typing import Any

from xl_serial import register_by_value


def get_command_path(executable: str) -> str:
    """The absolute path of ``executable`` among executorlib's worker scripts (not checked to exist)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, "backend", executable)


def cancel_items_in_queue(que: queue.Queue[Any]) -> None:
    """Empty ``que`` without blocking: each task (a dict with a ``"future"``) has its Future cancelled and is
    marked done; anything else is dropped. A running Future cannot be cancelled, but leaves the queue all the same."""
    while True:
        try:
            item = que.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, dict) and "future" in item:
            item["future"].cancel()
            que.task_done()


def cloudpickle_register(ind: int = 2) -> None:
    """Pickle by value the module of the frame ``ind`` levels up (0: this function, 1: its caller, 2: the
    caller's caller), so workers that cannot import it still get its functions. ``cloudpickle_register(ind=1)``
    in module ``mymod`` registers ``mymod``. A stack too short for ``ind`` uses the outermost frame; a module
    that cannot be registered is skipped."""
    frame = sys._getframe(0)
    for _ in range(max(ind, 0)):
        if frame.f_back is None:
            break
        frame = frame.f_back
    module = sys.modules.get(str(frame.f_globals.get("__name__")))
    if module is not None:
        # 1.x too: some notebook modules cannot be registered, and their functions go by reference.
        with contextlib.suppress(ValueError):
            register_by_value(module)

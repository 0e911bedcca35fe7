"""cloudpickle with pickle protocol 5: a message is a list of frames.

Frame 0 is the pickle stream; every large contiguous buffer (numpy arrays, bytearrays, ...) that supports
out-of-band pickling follows as its own frame, so a 1 GB array is never copied into one bytes object.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Sequence
from typing import Any

import cloudpickle

#: Buffers smaller than this stay inside the pickle stream: a frame per tiny array costs more than a copy.
OUT_OF_BAND_MIN_BYTES = 64 * 1024

Frame = bytes | bytearray | memoryview | pickle.PickleBuffer

#: Exact types that plain pickle and cloudpickle write alike, never out of band (e.g. a task's small result).
_ATOMIC = frozenset({int, float, complex, str, bytes, bool, type(None)})


def dumps(obj: Any, *, min_out_of_band: int = OUT_OF_BAND_MIN_BYTES) -> list[Frame]:
    """Pickle ``obj`` into frames: ``[stream, buffer, buffer, ...]``.

    Functions and classes defined in ``__main__`` (scripts, notebooks) are pickled by value by cloudpickle,
    so they run in a worker that cannot import the caller's script.
    """
    if type(obj) is tuple:
        for item in obj:
            if type(item) not in _ATOMIC:
                break
        else:  # nothing cloudpickle treats differently: the C pickler alone is several times faster
            return [pickle.dumps(obj, protocol=5)]
    buffers: list[Frame] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:
        # pickle's rule: a false return value sends the buffer out of band.
        if buffer.raw().nbytes < min_out_of_band:
            return True
        buffers.append(buffer)
        return False

    stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=keep_large)
    return [stream, *buffers]


def loads(frames: Sequence[Any]) -> Any:
    """Inverse of :func:`dumps`; ``frames`` may be bytes, memoryviews or zmq frames (anything with a buffer)."""
    if not frames:
        raise ValueError("cannot unpickle an empty frame list: a message has at least the pickle stream frame")
    views = [_view(frame) for frame in frames]
    return pickle.loads(views[0], buffers=views[1:])


def _view(frame: Any) -> memoryview:
    buffer = getattr(frame, "buffer", None)  # zmq.Frame exposes its bytes without a copy here
    return memoryview(buffer if buffer is not None else frame)


def frames_nbytes(frames: Sequence[Frame]) -> int:
    """Total size of a frame list in bytes (for logging and benchmarks)."""
    return sum(memoryview(f).nbytes if not isinstance(f, pickle.PickleBuffer) else f.raw().nbytes for f in frames)


def register_by_value(module: types.ModuleType | str) -> None:
    """Pickle everything defined in ``module`` by value, for modules the workers cannot import.

    ``__main__`` needs no registration (cloudpickle already ships it by value); use this for helper modules that
    live next to a notebook or a test file rather than on the workers' ``sys.path``.
    """
    mod = sys.modules[module] if isinstance(module, str) else module
    if mod.__name__ == "__main__":
        return
    try:
        cloudpickle.register_pickle_by_value(mod)
    except ValueError:
        # cloudpickle refuses modules missing from sys.modules (e.g. created on the fly); nothing to register.
        return

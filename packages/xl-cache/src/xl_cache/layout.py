"""Pure rules of the cache layout: file names, the metadata stamp, version compatibility, durations.

One HDF5 file per task, named after its key: ``<key>_i.h5`` while the task is pending or running,
``<key>_o.h5`` once it finished (it repeats the inputs, so it alone describes the task). Files are written
under a temporary name ``<name>.tmp-<host>-<number>`` and renamed, so the two final names only ever hold
complete files.
"""

from __future__ import annotations

import json
import math
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FORMAT_VERSION = 1
INPUT_SUFFIX = "_i.h5"
OUTPUT_SUFFIX = "_o.h5"
TEMP_MARK = ".tmp-"
#: The HDF5 attribute that holds the metadata stamp (JSON) of every file.
META_ATTRIBUTE = "xl_cache"

#: Datasets holding cloudpickle bytes (upstream names; ``runtime``, ``queue_id`` and ``error_log_file`` too, as
#: 1.x writes them), and the task's inputs among them. ``error_traceback`` is ours: the remote traceback of
#: ``error``, which holds the bare exception so that 1.x can read it.
PICKLED = (
    "function",
    "input_args",
    "input_kwargs",
    "resource_dict",
    "output",
    "error",
    "error_traceback",
    "runtime",
    "queue_id",
    "error_log_file",
)
INPUTS = ("function", "input_args", "input_kwargs", "resource_dict")

Kind = Literal["input", "output"]
Status = Literal["pending", "done", "error"]
STATUSES: tuple[Status, ...] = ("pending", "done", "error")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


KEY_RULE = (
    "a cache key is a relative path: parts separated by '/', each non-empty and not '.' or '..', with no '\\', "
    f"NUL or {TEMP_MARK!r}"
)


def check_key(key: str) -> str:
    """``key`` if it can name a cache file inside the cache directory, else ``ValueError`` naming the rule.

    ``/`` makes sub-folders (``"runs/r1"`` is ``<cache>/runs/r1_o.h5``), as in executorlib 1.x; a key can never
    name a file outside the cache directory.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"a cache key must be a non-empty str, got {key!r}")
    if "\\" in key or "\0" in key:
        raise ValueError(f"cache key {key!r} cannot name a file: {KEY_RULE}")
    if TEMP_MARK in key:
        raise ValueError(f"cache key {key!r} must not contain {TEMP_MARK!r} (that marks unfinished files); {KEY_RULE}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(
            f"cache key {key!r} would leave the cache directory or name no file: {KEY_RULE}, e.g. 'runs/r1'"
        )
    return key


def input_name(key: str) -> str:
    return check_key(key) + INPUT_SUFFIX


def output_name(key: str) -> str:
    return check_key(key) + OUTPUT_SUFFIX


def temp_name(name: str, host: str, number: str) -> str:
    """The name a file is written under before it is renamed to ``name`` (same directory, same file system).

    ``number`` tells apart the temporaries of ``name`` on ``host``: a small number whose file one writer at a
    time holds locked (so the next writer of ``name`` can tell a dead writer's leftover from a live writer's
    file), or a unique tag where locks do not work.
    """
    return f"{name}{TEMP_MARK}{host}-{number}"


def is_temp_name(filename: str) -> bool:
    return TEMP_MARK in filename and filename.split(TEMP_MARK, 1)[0].endswith((INPUT_SUFFIX, OUTPUT_SUFFIX))


def parse_name(filename: str) -> tuple[str, Kind] | None:
    """``(key, kind)`` of a final cache file name, ``None`` for anything else (temporary files included)."""
    for suffix, kind in ((OUTPUT_SUFFIX, "output"), (INPUT_SUFFIX, "input")):
        if filename.endswith(suffix) and len(filename) > len(suffix):
            key = filename[: -len(suffix)]
            if TEMP_MARK not in key and "/" not in key:
                return key, kind  # type: ignore[return-value]
    return None


def key_of(name_or_key: str) -> str:
    """A key given as itself or as one of its file names (``show add3f.._o.h5`` works like ``show add3f..``,
    ``show runs/r1_o.h5`` like ``show runs/r1``)."""
    head, _, tail = name_or_key.rpartition("/")
    parsed = parse_name(tail)
    if parsed is None:
        return check_key(name_or_key)
    key = f"{head}/{parsed[0]}" if head else parsed[0]
    try:
        return check_key(key)
    except ValueError:  # a path to the file, not a key: its name
        return parsed[0]


@dataclass(frozen=True, slots=True)
class Stamp:
    """The versions a file was written with."""

    format: int
    python: str
    cloudpickle: str


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def incompatibility(found: Stamp, running: Stamp) -> str | None:
    """Why a file written under ``found`` cannot be unpickled under ``running``, or ``None`` if it can.

    Code objects change between Python minor versions and cloudpickle's format between its minor versions;
    patch releases keep both, so they do not invalidate a cache.
    """
    if found.format == 0:
        return None  # executorlib 1.x wrote no versions: a pickle that does not load says so when it is read
    if found.format != running.format:
        return f"cache format {found.format} (this xl-cache reads format {running.format})"
    if _major_minor(found.python) != _major_minor(running.python):
        return f"Python {found.python} (this process runs Python {running.python})"
    if _major_minor(found.cloudpickle) != _major_minor(running.cloudpickle):
        return f"cloudpickle {found.cloudpickle} (this process has cloudpickle {running.cloudpickle})"
    return None


@dataclass(frozen=True, slots=True)
class Meta:
    """The metadata stamp of one file: enough to list it without reading (or unpickling) any dataset."""

    stamp: Stamp
    key: str
    function: str
    created: float
    status: Status
    runtime: float | None = None
    queue_id: int | None = None
    error_log_file: str | None = None
    error: str | None = None
    """``"ValueError: message"`` of a failed task, so listings show it without unpickling."""
    checksums: Mapping[str, int] = field(default_factory=dict)
    """CRC-32 of every dataset's bytes: a damaged dataset is reported, never unpickled into garbage."""


def encode_meta(meta: Meta) -> bytes:
    data = {
        "format": meta.stamp.format,
        "python": meta.stamp.python,
        "cloudpickle": meta.stamp.cloudpickle,
        "key": meta.key,
        "function": meta.function,
        "created": meta.created,
        "status": meta.status,
        "runtime": meta.runtime,
        "queue_id": meta.queue_id,
        "error_log_file": meta.error_log_file,
        "error": meta.error,
        "checksums": dict(meta.checksums),
    }
    return json.dumps(data, sort_keys=True, allow_nan=True).encode()


def _typed(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"metadata field {name!r} is {value!r}")
    return value


def decode_meta(raw: bytes) -> Meta:
    """Inverse of :func:`encode_meta`; ``ValueError`` for anything that is not a complete stamp."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the metadata stamp is not a JSON object")
    status = data.get("status")
    if status not in STATUSES:
        raise ValueError(f"metadata field 'status' is {status!r}")
    checksums = _typed(data, "checksums", dict)
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in checksums.items()):
        raise ValueError("metadata field 'checksums' is not a map of names to integers")
    runtime = _typed(data, "runtime", (int, float), optional=True)
    created = float(_typed(data, "created", (int, float)))
    return Meta(
        stamp=Stamp(_typed(data, "format", int), _typed(data, "python", str), _typed(data, "cloudpickle", str)),
        key=_typed(data, "key", str),
        function=_typed(data, "function", str),
        created=created if math.isfinite(created) else 0.0,
        status=status,
        runtime=None if runtime is None else float(runtime),
        queue_id=_typed(data, "queue_id", int, optional=True),
        error_log_file=_typed(data, "error_log_file", str, optional=True),
        error=_typed(data, "error", str, optional=True),
        checksums=checksums,
    )


#: Write permission for the group or for everyone else.
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
ROOT_UID = 0


TRUST_RULE = (
    "xl-cache unpickles a file only if you own it, nobody else may write it, and its directory is yours (or "
    "root's) and either closed to others' writes or sticky (chmod +t, as /tmp is)"
)


def trust_problem(
    *,
    uid: int,
    file_uid: int,
    file_mode: int,
    dir_uid: int,
    dir_mode: int,
    file: str = "FILE",
    directory: str = "DIR",
    file_owner: str | None = None,
) -> str | None:
    """Why user ``uid`` must not unpickle a cache file, with the fix, or ``None`` when it may (pure).

    Loading a pickle runs code, so a file is trusted only when nobody but ``uid`` (and root) could have written
    it or put it in place:

    - the file is owned by ``uid`` and neither its group nor others may write it;
    - its directory is owned by ``uid`` or root, and either neither its group nor others may write it, or it has
      the sticky bit (as ``/tmp`` and shared scratch directories do), which stops others from renaming or
      deleting the files they do not own.
    """
    if file_uid != uid:
        owner = f"uid {file_uid}" + (f" ({file_owner})" if file_owner else "")
        return (
            f"it is owned by {owner}, not by you (uid {uid}); {TRUST_RULE}. Fix: if you did not put it there, "
            f"remove it (rm {file}) and use a cache directory only you can write to"
        )
    if file_mode & _OTHERS_WRITE:
        return (
            f"its mode {stat.S_IMODE(file_mode):04o} lets others write it; {TRUST_RULE}. Fix: chmod go-w {file} "
            "if you trust its content, else remove it"
        )
    if dir_uid not in (uid, ROOT_UID):
        return (
            f"its directory {directory} is owned by uid {dir_uid}, who can replace your files in it; "
            f"{TRUST_RULE}. Fix: use a cache directory you own"
        )
    if dir_mode & _OTHERS_WRITE and not dir_mode & stat.S_ISVTX:
        return (
            f"its directory {directory} has mode {stat.S_IMODE(dir_mode):04o}: others can replace files in it; "
            f"{TRUST_RULE}. Fix: chmod go-w {directory} (or chmod +t {directory} if it must stay shared), or use "
            "another cache directory"
        )
    return None


def parse_duration(text: str) -> float:
    """Seconds in ``"30d"``, ``"12h"``, ``"15m"``, ``"45s"``, ``"2w"`` or a plain number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write a number with an optional unit s, m, h, d or w, e.g. 30d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]

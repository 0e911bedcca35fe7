"""``python -m xl_cache ls|show|rm|gc CACHE_DIRECTORY ...``: look into a cache directory and clean it.

Plain tables by default, ``--json`` for scripts. Exit status 0 on success, 1 when a requested key is missing or
a file is damaged or untrusted (someone else could have written it: it is listed, never unpickled, and ``gc``
leaves it alone), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from xl_cache.entries import CacheEntry, DamagedFile, read_entry, scan, walk
from xl_cache.errors import CacheError, CacheTrustError
from xl_cache.layout import is_temp_name, key_of, parse_duration
from xl_cache.tasks import input_path, output_path, remove

COLUMNS = ("key", "status", "function", "runtime", "queue_id", "size", "modified", "error")


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def record(found: CacheEntry | DamagedFile) -> dict[str, Any]:
    """The JSON-able summary of one listed file (nothing unpickled)."""
    if isinstance(found, DamagedFile):
        name = os.path.basename(found.path)
        status = "untrusted" if isinstance(found.problem, CacheTrustError) else "damaged"
        return {"key": name, "status": status, "error": str(found.problem), "filename": found.path}
    return {
        "key": found.key,
        "status": found.status,
        "function": found.function_name or None,
        "runtime": found.runtime,
        "queue_id": found.queue_id,
        "size": found.size,
        "created": found.meta.created,
        "modified": found.mtime,
        "error": found.error_summary,
        "error_log_file": found.error_log_file,
        "format": found.meta.stamp.format,
        "python": found.meta.stamp.python,
        "cloudpickle": found.meta.stamp.cloudpickle,
        "filename": found.path,
    }


def cell(column: str, value: Any) -> str:
    """How a record's value reads in the plain table."""
    if value is None:
        return "-"
    if column == "runtime":
        return f"{value:.3g} s"
    if column == "size":
        return _size(int(value))
    if column in ("created", "modified"):
        return _when(float(value))
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """A left-aligned plain-text table with a header line."""
    lines = [list(columns), *([cell(c, row.get(c)) for c in columns] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)


@dataclass(frozen=True)
class Candidate:
    """A file ``gc`` may delete."""

    path: str
    status: str  # pending, done, error, damaged or temporary
    mtime: float
    size: int


def select_garbage(candidates: Iterable[Candidate], *, now: float, older_than: float, pending: bool) -> list[Candidate]:
    """The candidates last modified more than ``older_than`` seconds before ``now``; pending inputs only with
    ``pending`` (a queued job still needs its input)."""
    cutoff = now - older_than
    return [c for c in candidates if c.mtime < cutoff and (pending or c.status != "pending")]


def _candidates(directory: str) -> Iterable[Candidate]:
    for found in scan(directory):
        path = found.path
        if isinstance(found, DamagedFile) and isinstance(found.problem, CacheTrustError):
            continue  # perhaps another user's file: not ours to delete
        status = "damaged" if isinstance(found, DamagedFile) else found.status
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        yield Candidate(path, status, stat.st_mtime, stat.st_size)
        if status != "pending" and isinstance(found, CacheEntry):
            # a key listed by its output may have a stale input beside it (a worker killed before removing it)
            stale = input_path(os.path.dirname(path), found.key)
            if os.path.exists(stale):
                stat = os.stat(stale)
                yield Candidate(stale, status, stat.st_mtime, stat.st_size)
    for _, items in walk(directory):
        for item in items:
            if is_temp_name(item.name):
                stat = item.stat(follow_symlinks=False)
                if stat.st_uid == os.geteuid():  # another user's write is not ours to delete
                    yield Candidate(item.path, "temporary", stat.st_mtime, stat.st_size)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=repr))


def cmd_ls(args: argparse.Namespace) -> int:
    rows = [record(found) for found in scan(args.cache_directory, recursive=not args.no_recursive)]
    if args.json:
        _print_json(rows)
    elif rows:
        print(table(rows))
    else:
        print(f"no cache entries in {os.path.abspath(args.cache_directory)}")
    return 1 if any(row["status"] in ("damaged", "untrusted") for row in rows) else 0


def _show_text(value: Any, limit: int = 2000) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cmd_show(args: argparse.Namespace) -> int:
    key = key_of(args.key)
    path = output_path(args.cache_directory, key)
    if not os.path.exists(path):
        path = input_path(args.cache_directory, key)
    if not os.path.exists(path):
        print(f"xl_cache: no entry {key!r} in {os.path.abspath(args.cache_directory)}", file=sys.stderr)
        return 1
    try:
        entry = read_entry(path)
        shown = record(entry)
        shown["input_args"] = _show_text(entry.input_args)
        shown["input_kwargs"] = _show_text(entry.input_kwargs)
        shown["resource_dict"] = _show_text(entry.resource_dict)
        if entry.status == "done":
            shown["output"] = _show_text(entry.output)
        elif entry.status == "error" and entry.error is not None:
            cause = entry.error.__cause__
            shown["traceback"] = str(cause) if cause is not None else shown["error"]
    except CacheError as problem:
        print(f"xl_cache: {problem}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(shown)
        return 0
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        text = cell(name, value) if name in ("runtime", "size", "created", "modified") else str(value)
        print(f"{name.ljust(width)}  {text}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    missing = 0
    removed: list[str] = []
    for given in args.keys:
        paths = remove(args.cache_directory, key_of(given))
        if not paths:
            print(f"xl_cache: no entry {given!r} in {os.path.abspath(args.cache_directory)}", file=sys.stderr)
            missing += 1
        removed += paths
    if args.json:
        _print_json({"removed": removed})
    else:
        for path in removed:
            print(f"removed {path}")
    return 1 if missing else 0


def cmd_gc(args: argparse.Namespace) -> int:
    older_than = parse_duration(args.older_than)
    chosen = select_garbage(
        _candidates(args.cache_directory), now=time.time(), older_than=older_than, pending=args.include_pending
    )
    removed = []
    for candidate in chosen:
        if not args.dry_run:
            try:
                os.unlink(candidate.path)
            except FileNotFoundError:
                continue
        removed.append(candidate)
    freed = sum(c.size for c in removed)
    if args.json:
        _print_json({"dry_run": args.dry_run, "removed": [c.path for c in removed], "bytes": freed})
    else:
        verb = "would remove" if args.dry_run else "removed"
        for candidate in removed:
            print(f"{verb} {candidate.path} ({candidate.status})")
        print(f"{verb} {len(removed)} file(s), {_size(freed)}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m xl_cache", description=__doc__.splitlines()[0] if __doc__ else "")
    commands = top.add_subparsers(dest="command", required=True)

    ls = commands.add_parser("ls", help="list the entries (nothing is unpickled)")
    ls.add_argument("cache_directory")
    ls.add_argument("--no-recursive", action="store_true", help="do not look into sub-directories")
    ls.set_defaults(run=cmd_ls)

    show = commands.add_parser("show", help="one entry: metadata, inputs, output or traceback")
    show.add_argument("cache_directory")
    show.add_argument("key", help="the key, or its _i.h5/_o.h5 file name")
    show.set_defaults(run=cmd_show)

    rm = commands.add_parser("rm", help="delete entries (input and output files)")
    rm.add_argument("cache_directory")
    rm.add_argument("keys", nargs="+", metavar="key")
    rm.set_defaults(run=cmd_rm)

    gc = commands.add_parser("gc", help="delete entries and leftover temporary files not modified for a while")
    gc.add_argument("cache_directory")
    gc.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 15m, 45s, 2w")
    gc.add_argument("--include-pending", action="store_true", help="pending inputs too (their jobs will fail)")
    gc.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    gc.set_defaults(run=cmd_gc)

    for command in (ls, show, rm, gc):
        command.add_argument("--json", action="store_true", help="machine-readable output")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ValueError as problem:  # a bad key or duration
        print(f"xl_cache: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code

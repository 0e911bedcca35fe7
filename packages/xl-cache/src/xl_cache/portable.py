"""``XL_PORTABLE``: force portable fallbacks of Linux-only parts, so that Linux CI tests the code other systems run.

``XL_PORTABLE=all``, or a comma list of the names in :data:`FALLBACKS`. Each xl-* package reads the variable
through its own copy of this module (sibling packages do not import each other); the copies keep the same
names, which a cross-package test checks. Read at each use, not at import, so a test can set it for a while.
"""

from __future__ import annotations

import os

__all__ = ["FALLBACKS", "PORTABLE_VARIABLE", "forced"]

PORTABLE_VARIABLE = "XL_PORTABLE"
#: every fallback name, whichever package owns it: tcp (xl-comm: loopback TCP instead of an abstract unix socket),
#: poll (xl-comm: poll instead of epoll), pipe (xl-comm: a pipe instead of an eventfd), waiter (xl-spawn: a waiter
#: thread instead of a pidfd), watchdog (xl-spawn and xl-comm: a worker thread instead of the F_SETSIG lifeline),
#: ps (xl-spawn: ``ps`` instead of ``/proc/<pid>/cmdline``), fdpath (xl-cache: open by path instead of
#: ``/proc/self/fd``), shm (xl-comm: large buffers as socket frames instead of sealed shared memory)
FALLBACKS = frozenset({"tcp", "poll", "pipe", "waiter", "watchdog", "ps", "fdpath", "shm"})


def forced(name: str) -> bool:
    """Whether ``XL_PORTABLE`` asks for fallback ``name`` (one of :data:`FALLBACKS`)."""
    if name not in FALLBACKS:
        raise ValueError(f"unknown fallback {name!r}: it must be one of {sorted(FALLBACKS)}")
    value = os.environ.get(PORTABLE_VARIABLE, "")
    if not value:
        return False
    names = {part.strip() for part in value.split(",")} - {""}
    unknown = names - FALLBACKS - {"all"}
    if unknown:
        raise ValueError(
            f"{PORTABLE_VARIABLE}={value!r} names unknown fallbacks {sorted(unknown)}: use 'all' or a comma list "
            f"of {sorted(FALLBACKS)}, or unset it to use the Linux parts where they exist"
        )
    return "all" in names or name in names

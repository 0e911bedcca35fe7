"""The hub's fd poller: ``select.epoll`` on Linux, else ``select.poll`` behind the same few methods.

Both take ``select.POLLIN`` masks (EPOLLIN has the same value on Linux) and a timeout in seconds with -1 for none,
as epoll does. ``XL_PORTABLE=poll`` picks ``select.poll`` on Linux too, to test it.
"""

from __future__ import annotations

import select
from typing import Protocol

from xl_comm.portable import forced

__all__ = ["FdPoller", "PollPoller", "new_poller"]


class FdPoller(Protocol):
    """What the hub uses of ``select.epoll``."""

    def register(self, fd: int, eventmask: int = ..., /) -> None: ...

    def modify(self, fd: int, eventmask: int, /) -> None: ...

    def unregister(self, fd: int, /) -> None: ...

    def poll(self, timeout: float | None = ..., maxevents: int = ...) -> list[tuple[int, int]]: ...

    def close(self) -> None: ...


class PollPoller:
    """``select.poll`` with epoll's timeout in seconds and a ``close()``; for systems without epoll (macOS, BSD)."""

    def __init__(self) -> None:
        self._poll = select.poll()

    def register(self, fd: int, eventmask: int = select.POLLIN, /) -> None:
        self._poll.register(fd, eventmask)

    def modify(self, fd: int, eventmask: int, /) -> None:
        self._poll.modify(fd, eventmask)

    def unregister(self, fd: int, /) -> None:
        self._poll.unregister(fd)

    def poll(self, timeout: float | None = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        return self._poll.poll(None if timeout is None or timeout < 0 else timeout * 1000)

    def close(self) -> None:
        """Nothing to release: a poll object holds no fd."""


def new_poller() -> FdPoller:
    """epoll where it exists and is not disabled by ``XL_PORTABLE``, else poll."""
    if hasattr(select, "epoll") and not forced("poll"):
        return select.epoll()
    return PollPoller()

"""The exceptions of xl-cache: every one names the file it is about."""

from __future__ import annotations


class CacheError(Exception):
    """Base class of the cache's own errors."""


class CacheCorruptError(CacheError):
    """A cache file is truncated, damaged or incomplete; it is never read as a result."""


class CacheVersionError(CacheError):
    """A cache file was written by another cache format, Python or cloudpickle version than this process runs."""


class CachePendingError(CacheError):
    """The task has an input file but no output yet: it is queued, running, or its job died."""


class CacheTrustError(CacheError):
    """A cache file someone else could have written or replaced: it is refused, never unpickled."""

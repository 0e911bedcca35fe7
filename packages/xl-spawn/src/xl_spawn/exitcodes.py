"""Exit status → readable text, the way a death report should show it (pure)."""

from __future__ import annotations

import signal

__all__ = ["describe_returncode"]

# A shell (and mpiexec, srun, flux) reports a child killed by signal N as exit status 128 + N.
_SHELL_SIGNAL_BASE = 128
_SHELL_SIGNAL_LAST = 159


def _signal_name(signum: int) -> str | None:
    """The name of signal ``signum`` on this platform, or None if it has none."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        pass
    # Real-time signals between SIGRTMIN and SIGRTMAX have no members of their own in ``signal.Signals``.
    rtmin = getattr(signal, "SIGRTMIN", None)
    rtmax = getattr(signal, "SIGRTMAX", None)
    if rtmin is not None and rtmax is not None and rtmin < signum < rtmax:
        return f"SIGRTMIN+{signum - rtmin}"
    return None


def describe_returncode(returncode: int) -> str:
    """Describe a ``Popen.returncode`` for an error message.

    >>> describe_returncode(-9)
    'SIGKILL(-9)'
    >>> describe_returncode(3)
    'EXIT(3)'
    >>> describe_returncode(137)
    'EXIT(137, i.e. SIGKILL)'
    """
    if not isinstance(returncode, int):
        raise TypeError(f"returncode must be an int, got {returncode!r}")
    if returncode < 0:
        return f"{_signal_name(-returncode) or 'SIG?'}({returncode})"
    if _SHELL_SIGNAL_BASE < returncode <= _SHELL_SIGNAL_LAST:
        name = _signal_name(returncode - _SHELL_SIGNAL_BASE)
        if name is not None:
            return f"EXIT({returncode}, i.e. {name})"
    return f"EXIT({returncode})"

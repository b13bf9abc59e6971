"""The loopscope error tree.

Every error the library raises on purpose is a :class:`LoopscopeError`. Front-ends catch it once, at the
top of a command, and turn it into a one-line message and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "LoopscopeError",
    "NetlinkError",
    "NetnsError",
    "ParseError",
    "ProbeError",
    "UsageError",
]


class LoopscopeError(Exception):
    """Base of every error loopscope raises on purpose."""


class BackendUnavailable(LoopscopeError):
    """A data source cannot work here (wrong OS, no permission, kernel without the feature).

    Raised when the backend is constructed, never halfway through a dump.
    """


class ParseError(LoopscopeError):
    """Malformed input from the kernel or /proc.

    Args:
        message: what was wrong.
        path: the file or stream the input came from (``"netlink"`` for netlink replies).
        lineno: 1-based line number in text files, or the byte offset in binary streams; None if unknown.
        line: the offending line or a hex excerpt of the offending bytes.
    """

    def __init__(
        self, message: str, *, path: str = "", lineno: int | None = None, line: str = ""
    ) -> None:
        self.path = path
        self.lineno = lineno
        self.line = line
        where = path + (f":{lineno}" if lineno is not None else "")
        super().__init__(f"{where}: {message}" if where else message)


class NetlinkError(LoopscopeError):
    """The kernel answered a netlink request with an error.

    Args:
        errno: the positive errno from ``nlmsgerr.error``.
        request: what was asked, for the message.
    """

    def __init__(self, errno: int, request: str = "") -> None:
        import os as _os

        self.errno = errno
        self.request = request
        super().__init__(
            f"netlink {request or 'request'} failed: {_os.strerror(errno)} (errno {errno})"
        )


class ProbeError(LoopscopeError):
    """A probe of a target failed in a given phase (resolve, connect, tls, request, read)."""

    def __init__(self, target: str, phase: str, reason: str) -> None:
        self.target = target
        self.phase = phase
        self.reason = reason
        super().__init__(f"{target}: {phase} failed: {reason}")


class UsageError(LoopscopeError):
    """Bad input from the user: unknown port, process or netns, malformed address."""


class NetnsError(LoopscopeError):
    """A network namespace could not be entered (missing, or no permission)."""

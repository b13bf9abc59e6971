"""The loopscope error tree.

Every error the library raises on purpose is a :class:`LoopscopeError`. Front-ends catch it once, at the
top of a command, and turn it into a one-line message and exit code 2.
"""

from __future__ import annotations

import errno as _errno
import os as _os

__all__ = [
    "BackendUnavailable",
    "LoopscopeError",
    "NetlinkError",
    "NetnsError",
    "ParseError",
    "ProbeError",
    "UsageError",
    "describe_os_error",
    "errno_message",
    "errno_name",
]


def errno_name(err: int) -> str:
    """The symbolic name of a positive errno, or its number when the name is unknown.

    Example: ``errno_name(111) == "ECONNREFUSED"``; ``errno_name(9999) == "9999"``.
    """
    return _errno.errorcode.get(err, str(err))


def errno_message(err: int) -> str:
    """The C library's text of a positive errno and its number, as netlink errors are shown.

    Example: ``errno_message(101) == "Network is unreachable (errno 101)"``.
    """
    return f"{_os.strerror(err)} (errno {err})"


def describe_os_error(exc: OSError) -> str:
    """An OSError as one phrase: the C library's text and the symbolic name; ``timed out`` for timeouts.

    Example: ``describe_os_error(ConnectionRefusedError(111, "Connection refused"))``
    -> ``"Connection refused (ECONNREFUSED)"``; ``describe_os_error(TimeoutError())`` -> ``"timed out"``.
    """
    if isinstance(exc, TimeoutError) or exc.errno is None:
        return "timed out"
    return f"{exc.strerror} ({errno_name(exc.errno)})"


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
        self.errno = errno
        self.request = request
        super().__init__(f"netlink {request or 'request'} failed: {errno_message(errno)}")


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

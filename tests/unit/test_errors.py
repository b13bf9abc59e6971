"""The errno helpers of loopscope.errors: one way to name and describe an errno everywhere."""

from __future__ import annotations

import errno
import socket

from loopscope.errors import NetlinkError, describe_os_error, errno_message, errno_name


def test_errno_name_known_and_unknown() -> None:
    assert errno_name(errno.ECONNREFUSED) == "ECONNREFUSED"
    assert errno_name(1) == "EPERM"
    assert errno_name(99999) == "99999"


def test_errno_message_is_strerror_and_number() -> None:
    assert errno_message(errno.ENETUNREACH) == "Network is unreachable (errno 101)"


def test_netlink_error_uses_errno_message() -> None:
    exc = NetlinkError(errno.EPERM, "RTM_GETROUTE")
    assert exc.errno == errno.EPERM
    assert str(exc) == "netlink RTM_GETROUTE failed: Operation not permitted (errno 1)"


def test_describe_os_error_from_a_real_refused_connect() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
        port = server.getsockname()[1]
        with socket.socket() as client:
            try:
                client.connect(("127.0.0.1", port))
            except OSError as exc:
                got = describe_os_error(exc)
            else:
                raise AssertionError("connect to a non-listening socket succeeded")
    assert got == "Connection refused (ECONNREFUSED)"


def test_describe_os_error_timeouts() -> None:
    assert describe_os_error(TimeoutError()) == "timed out"
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.01)
        try:
            a.recv(1)  # nothing was sent: the timeout fires
        except OSError as exc:
            assert describe_os_error(exc) == "timed out"
        else:
            raise AssertionError("recv on an empty socket returned")
    assert describe_os_error(OSError("no errno")) == "timed out"

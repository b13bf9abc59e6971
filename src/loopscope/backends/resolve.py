"""Name resolution through the C library's getaddrinfo(3), the one place loopscope resolves names.

getaddrinfo answers as the *calling thread's* network namespace sees it: glibc's RFC 6724 sort probes each
destination with a UDP connect() and puts unreachable ones last (rule 1). It reads the calling process's
/etc/hosts and nsswitch.conf, not those of another mount namespace.
"""

from __future__ import annotations

import ipaddress
import socket

from loopscope.errors import ProbeError
from loopscope.model import IPAddress

__all__ = ["distinct_addresses", "resolve_stream"]


def resolve_stream(
    name: str, port: int | None = None, *, family: int = socket.AF_UNSPEC
) -> list[tuple[int, str]]:
    """``getaddrinfo(name, port, family, SOCK_STREAM)``: every answer, in the resolver's order.

    Args:
        name: host name or address literal.
        port: port to resolve with (None: no service).
        family: ``socket.AF_UNSPEC`` (both), ``AF_INET`` or ``AF_INET6``.

    Returns:
        ``(ip_version, address)`` per answer, duplicates kept (a caller numbering answers counts them);
        ``address`` is getaddrinfo's text (an IPv6 link-local answer may carry ``%scope``).
        Example: ``resolve_stream("localhost")`` -> ``[(6, "::1"), (4, "127.0.0.1")]`` with the usual
        hosts file.

    Raises:
        ProbeError: the name does not resolve (phase ``resolve``, reason = gai_strerror text,
            ``Name or service not known``).
    """
    try:
        infos = socket.getaddrinfo(name, port, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProbeError(name, "resolve", str(exc.strerror)) from exc
    return [
        (6 if fam == socket.AF_INET6 else 4, str(sockaddr[0]))
        for fam, _type, _proto, _canon, sockaddr in infos
    ]


def distinct_addresses(answers: list[tuple[int, str]]) -> tuple[IPAddress, ...]:
    """The distinct addresses of :func:`resolve_stream` answers, first occurrence first, scope ids dropped.

    Example: ``[(6, "::1"), (4, "127.0.0.1"), (4, "127.0.0.1")]`` -> ``(IPv6Address("::1"),
    IPv4Address("127.0.0.1"))``.
    """
    seen: list[IPAddress] = []
    for _version, text in answers:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
        if addr not in seen:
            seen.append(addr)
    return tuple(seen)

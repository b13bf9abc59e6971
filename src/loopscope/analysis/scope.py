"""Address scope: loopback, wildcard, an address this host owns, or other (pure).

Loopback is 127.0.0.0/8, ::1 and IPv4-mapped ::ffff:127.0.0.0/104. On Linux, traffic to an address
the host owns is routed through ``lo`` too (``ip route get <own ip>`` -> ``dev lo``), so a connection
whose both ends are loopback or host-owned addresses in one namespace is a loopback connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from loopscope.model import IPAddress, Scope, SocketRecord

__all__ = [
    "classify_address",
    "host_address_set",
    "is_loopback",
    "is_loopback_connection",
    "is_wildcard",
    "unmap",
]

_V6_LOOPBACK = ipaddress.IPv6Address("::1")


def unmap(addr: IPAddress) -> IPAddress:
    """``::ffff:127.0.0.1`` -> ``127.0.0.1``; other addresses unchanged."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback(addr: IPAddress) -> bool:
    """True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.

    Example: ``is_loopback(IPv6Address("::ffff:127.0.0.2")) is True``.
    """
    plain = unmap(addr)
    if isinstance(plain, ipaddress.IPv4Address):
        return plain.packed[0] == 127
    return plain == _V6_LOOPBACK


def is_wildcard(addr: IPAddress) -> bool:
    """True for 0.0.0.0 and ::."""
    return int(addr) == 0


def host_address_set(addresses: Iterable[object]) -> frozenset[IPAddress]:
    """The set of addresses from InterfaceAddress records (or plain addresses), unmapped."""
    out: set[IPAddress] = set()
    for item in addresses:
        addr = getattr(item, "address", item)
        if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            out.add(unmap(addr))
    return frozenset(out)


def classify_address(addr: IPAddress, host_addresses: frozenset[IPAddress]) -> Scope:
    """Scope of a bind or peer address.

    Args:
        addr: the address.
        host_addresses: addresses configured in the namespace (see :func:`host_address_set`).

    Example: ``classify_address(IPv4Address("192.0.2.2"), frozenset({IPv4Address("192.0.2.2")}))``
    -> ``Scope.OWN_ADDRESS``.
    """
    if is_wildcard(addr):
        return Scope.WILDCARD
    if is_loopback(addr):
        return Scope.LOOPBACK
    if unmap(addr) in host_addresses:
        return Scope.OWN_ADDRESS
    return Scope.OTHER


def is_loopback_connection(sock: SocketRecord, host_addresses: frozenset[IPAddress]) -> bool:
    """True when both ends are loopback or host-owned addresses (traffic through ``lo``) and the
    socket is connected (remote port set)."""
    if sock.remote.port == 0 or is_wildcard(sock.remote.address):
        return False
    local = (Scope.LOOPBACK, Scope.OWN_ADDRESS)
    local_ok = classify_address(sock.local.address, host_addresses) in local
    remote_ok = classify_address(sock.remote.address, host_addresses) in local
    return local_ok and remote_ok

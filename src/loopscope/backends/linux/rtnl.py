"""Interfaces and addresses of the calling thread's network namespace over NETLINK_ROUTE.

Kernel sources of truth: include/uapi/linux/rtnetlink.h, include/uapi/linux/if_link.h,
include/uapi/linux/if_addr.h.

- RTM_GETLINK (18) dump, reply ``struct ifinfomsg`` (16 bytes: family u8, pad u8, type u16, index i32,
  flags u32, change u32) + attributes (IFLA_MTU=4 u32, IFLA_IFNAME=3 string).
- RTM_GETADDR (22) dump, reply ``struct ifaddrmsg`` (8 bytes: family u8, prefixlen u8, flags u8, scope u8,
  index u32) + attributes (IFA_ADDRESS=1, IFA_LOCAL=2, IFA_LABEL=3).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from loopscope.backends.linux.netlink import KernelTransport, Transport, dump, parse_attributes
from loopscope.errors import ParseError
from loopscope.model import InterfaceAddress, LinkInfo

__all__ = [
    "dump_addresses",
    "dump_links",
    "parse_address",
    "parse_link",
    "read_addresses",
    "read_links",
]

NETLINK_ROUTE = 0
RTM_GETLINK = 18
RTM_GETADDR = 22
IFLA_IFNAME = 3
IFLA_MTU = 4
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000

_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")


def parse_link(payload: bytes) -> LinkInfo:
    """Decode one RTM_NEWLINK reply.

    Example: lo with flags 0x10049 (UP|LOOPBACK|RUNNING|LOWER_UP) and mtu 65536 ->
    ``LinkInfo(name="lo", index=1, up=True, running=True, loopback=True, mtu=65536)``.

    Raises:
        ParseError: shorter than struct ifinfomsg or malformed attributes.
    """
    if len(payload) < _IFINFO.size:
        raise ParseError("ifinfomsg too short", path="netlink", line=payload.hex())
    _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
    attrs = parse_attributes(payload, _IFINFO.size)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    mtu_raw = attrs.get(IFLA_MTU)
    return LinkInfo(
        name=name or f"if{index}",
        index=index,
        up=bool(flags & IFF_UP),
        running=bool(flags & (IFF_RUNNING | IFF_LOWER_UP)),
        loopback=bool(flags & IFF_LOOPBACK),
        mtu=struct.unpack_from("=I", mtu_raw)[0] if mtu_raw and len(mtu_raw) >= 4 else None,
    )


def parse_address(payload: bytes, names: dict[int, str]) -> InterfaceAddress | None:
    """Decode one RTM_NEWADDR reply; None for families other than inet/inet6.

    IFA_LOCAL is the interface's own address for IPv4 (IFA_ADDRESS is the peer on point-to-point links);
    IPv6 has only IFA_ADDRESS.

    Raises:
        ParseError: shorter than struct ifaddrmsg, malformed attributes, or a bad address length.
    """
    if len(payload) < _IFADDR.size:
        raise ParseError("ifaddrmsg too short", path="netlink", line=payload.hex())
    family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = parse_attributes(payload, _IFADDR.size)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None:
        return None
    want = 4 if family == socket.AF_INET else 16
    if len(raw) != want:
        raise ParseError(
            f"address of {len(raw)} bytes for family {family}", path="netlink", line=raw.hex()
        )
    address = ipaddress.IPv4Address(raw) if want == 4 else ipaddress.IPv6Address(raw)
    return InterfaceAddress(
        interface=names.get(index, f"if{index}"), index=index, address=address, prefixlen=prefixlen
    )


def dump_links(transport: Transport) -> list[LinkInfo]:
    """Every interface of the namespace (one RTM_GETLINK dump)."""
    req = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    return [parse_link(p) for p in dump(transport, RTM_GETLINK, req, seq=1, what="RTM_GETLINK")]


def dump_addresses(transport: Transport, names: dict[int, str]) -> list[InterfaceAddress]:
    """Every inet/inet6 address of the namespace (one RTM_GETADDR dump)."""
    req = _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    out = []
    for payload in dump(transport, RTM_GETADDR, req, seq=2, what="RTM_GETADDR"):
        addr = parse_address(payload, names)
        if addr is not None:
            out.append(addr)
    return out


def read_links() -> list[LinkInfo]:
    """Interfaces of the calling thread's namespace.

    Raises:
        BackendUnavailable: NETLINK_ROUTE cannot be opened.
    """
    with KernelTransport(NETLINK_ROUTE) as transport:
        return dump_links(transport)


def read_addresses() -> tuple[list[LinkInfo], list[InterfaceAddress]]:
    """Interfaces and addresses of the calling thread's namespace, read on one socket.

    Raises:
        BackendUnavailable: NETLINK_ROUTE cannot be opened.
    """
    with KernelTransport(NETLINK_ROUTE) as transport:
        links = dump_links(transport)
        names = {link.index: link.name for link in links}
        return links, dump_addresses(transport, names)

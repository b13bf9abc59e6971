"""Routing tables and route lookups of the calling thread's network namespace over NETLINK_ROUTE.

Kernel sources of truth: include/uapi/linux/rtnetlink.h (struct rtmsg, RTA_*, RTN_*),
net/ipv4/fib_frontend.c ``inet_rtm_getroute`` (what ``ip route get`` asks).

- RTM_GETROUTE (26) dump, reply RTM_NEWROUTE (24): ``struct rtmsg`` (12 bytes: family u8, dst_len u8,
  src_len u8, tos u8, table u8, protocol u8, scope u8, type u8, flags u32) + attributes
  (RTA_DST=1, RTA_OIF=4, RTA_GATEWAY=5, RTA_PREFSRC=7, RTA_TABLE=15 u32, which wins over rtm_table).
- RTM_GETROUTE without NLM_F_DUMP and with RTA_DST: one RTM_NEWROUTE for the route the FIB picks, policy
  rules included, or NLMSG_ERROR (``-ENETUNREACH`` when nothing matches, e.g. lo down in a fresh netns).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from loopscope.backends.linux.netlink import (
    NLM_F_REQUEST,
    NLMSG_ERROR,
    KernelTransport,
    Transport,
    dump,
    pack_message,
    parse_attributes,
    parse_messages,
)
from loopscope.errors import NetlinkError, ParseError, errno_message
from loopscope.model import IPAddress
from loopscope.model.routing import RouteEntry, RouteLookup

__all__ = [
    "ROUTE_TYPES",
    "RT_TABLE_LOCAL",
    "RT_TABLE_MAIN",
    "dump_routes",
    "lookup_route",
    "parse_route",
    "read_routes",
]

NETLINK_ROUTE = 0
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
ROUTE_TYPES = (
    "unspec",
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
    "xresolve",
)

_RTMSG = struct.Struct("=BBBBBBBBI")


def _addr(family: int, raw: bytes | None) -> IPAddress | None:
    if raw is None:
        return None
    want = 4 if family == socket.AF_INET else 16
    if len(raw) != want:
        raise ParseError(
            f"route address of {len(raw)} bytes for family {family}", path="netlink", line=raw.hex()
        )
    return ipaddress.IPv4Address(raw) if want == 4 else ipaddress.IPv6Address(raw)


def parse_route(payload: bytes, names: dict[int, str]) -> RouteEntry | None:
    """Decode one RTM_NEWROUTE payload; None for families other than inet/inet6.

    Example: the local-table route of lo, ``rtmsg(family=2, dst_len=8, table=255, type=2)`` with
    RTA_DST 7f000000, RTA_OIF 1 and RTA_PREFSRC 7f000001 ->
    ``RouteEntry(family=4, table=255, type="local", dst="127.0.0.0/8", dev="lo", prefsrc=127.0.0.1)``.

    Raises:
        ParseError: shorter than struct rtmsg, malformed attributes, a bad address length, or a
            prefix longer than the address.
    """
    if len(payload) < _RTMSG.size:
        raise ParseError("rtmsg too short", path="netlink", line=payload.hex())
    family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(
        payload
    )
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = parse_attributes(payload, _RTMSG.size)
    if RTA_TABLE in attrs and len(attrs[RTA_TABLE]) >= 4:
        table = struct.unpack_from("=I", attrs[RTA_TABLE])[0]
    dst_addr = _addr(family, attrs.get(RTA_DST))
    if dst_len == 0:
        dst = "default"
    elif dst_addr is None:
        dst = f"?/{dst_len}"
    elif dst_len > dst_addr.max_prefixlen:
        raise ParseError(
            f"route prefix /{dst_len} longer than the address", path="netlink", line=payload.hex()
        )
    else:
        dst = str(ipaddress.ip_network(f"{dst_addr}/{dst_len}", strict=False))
    oif = attrs.get(RTA_OIF)
    dev = None
    if oif is not None and len(oif) >= 4:
        index = struct.unpack_from("=i", oif)[0]
        dev = names.get(index, f"if{index}")
    return RouteEntry(
        family=4 if family == socket.AF_INET else 6,
        table=table,
        type=ROUTE_TYPES[rtype] if rtype < len(ROUTE_TYPES) else str(rtype),
        dst=dst,
        dev=dev,
        gateway=_addr(family, attrs.get(RTA_GATEWAY)),
        prefsrc=_addr(family, attrs.get(RTA_PREFSRC)),
    )


def dump_routes(transport: Transport, names: dict[int, str]) -> list[RouteEntry]:
    """Every IPv4 and IPv6 route of every table (one dump per family)."""
    out: list[RouteEntry] = []
    for seq, family in ((11, socket.AF_INET), (12, socket.AF_INET6)):
        req = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        try:
            payloads = list(dump(transport, RTM_GETROUTE, req, seq=seq, what="RTM_GETROUTE"))
        except NetlinkError as exc:
            if family == socket.AF_INET6 and exc.errno in (97, 93):  # EAFNOSUPPORT: ipv6.disable=1
                continue
            raise
        for payload in payloads:
            route = parse_route(payload, names)
            if route is not None:
                out.append(route)
    return out


def lookup_route(
    transport: Transport, address: IPAddress, names: dict[int, str], *, seq: int = 20
) -> RouteLookup:
    """``ip route get ADDRESS``: the route the kernel would use, or the error it gives.

    Raises:
        ParseError: malformed reply.
    """
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    raw = address.packed
    attr = struct.pack("=HH", 4 + len(raw), RTA_DST) + raw
    req = _RTMSG.pack(family, 8 * len(raw), 0, 0, 0, 0, 0, 0, 0) + attr
    transport.send(pack_message(RTM_GETROUTE, NLM_F_REQUEST, seq, req))
    while True:
        for msg in parse_messages(transport.recv()):
            if msg.seq != seq:
                continue
            if msg.type == NLMSG_ERROR:
                if len(msg.payload) < 4:
                    raise ParseError("short NLMSG_ERROR", path="netlink")
                (err,) = struct.unpack_from("=i", msg.payload)
                if err == 0:
                    continue
                return RouteLookup(address=address, error=errno_message(-err))
            if msg.type == RTM_NEWROUTE:
                route = parse_route(msg.payload, names)
                if route is None:
                    raise ParseError("route reply of unknown family", path="netlink")
                return RouteLookup(address=address, type=route.type, dev=route.dev)


def read_routes(
    lookups: tuple[IPAddress, ...] = (), names: dict[int, str] | None = None
) -> tuple[list[RouteEntry], list[RouteLookup]]:
    """Every route, and a lookup for each of ``lookups``, in the calling thread's namespace.

    Raises:
        BackendUnavailable: NETLINK_ROUTE cannot be opened.
        NetlinkError: the dump failed.
    """
    names = names or {}
    with KernelTransport(NETLINK_ROUTE) as transport:
        routes = dump_routes(transport, names)
        found = [lookup_route(transport, addr, names, seq=20 + i) for i, addr in enumerate(lookups)]
    return routes, found

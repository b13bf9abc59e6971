"""TCP and UDP socket dumps over NETLINK_SOCK_DIAG (what ``ss`` uses), parsed with ``struct``.

Kernel sources of truth: include/uapi/linux/inet_diag.h, net/ipv4/inet_diag.c, net/ipv4/udp_diag.c,
include/uapi/linux/tcp.h (struct tcp_info).

Wire layouts (native byte order except ports and addresses, which are network order):
- ``struct inet_diag_sockid`` (48 bytes): sport be16, dport be16, src[4] be32, dst[4] be32, if u32,
  cookie[2] u32 (cookie = cookie[0] | cookie[1] << 32).
- ``struct inet_diag_req_v2`` (56 bytes): family u8, protocol u8, ext u8, pad u8, states u32, sockid.
- ``struct inet_diag_msg`` (72 bytes): family u8, state u8, timer u8, retrans u8, sockid, expires u32,
  rqueue u32, wqueue u32, uid u32, inode u32; then attributes.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator, Mapping

from loopscope.backends.linux._fastrec import positional_constructor
from loopscope.backends.linux.netlink import KernelTransport, Transport, dump
from loopscope.errors import ParseError
from loopscope.model import (
    Endpoint,
    Family,
    NetnsId,
    ProcessKey,
    Proto,
    SocketRecord,
    TcpInfo,
    TcpState,
)

__all__ = [
    "ALL_STATES",
    "INET_DIAG_CGROUP_ID",
    "INET_DIAG_INFO",
    "INET_DIAG_SKV6ONLY",
    "SOCK_DIAG_BY_FAMILY",
    "build_request",
    "dump_sockets",
    "parse_inet_diag_msg",
    "parse_tcp_info",
    "read_sockets",
]

SOCK_DIAG_BY_FAMILY = 20
NETLINK_SOCK_DIAG = 4  # include/uapi/linux/netlink.h
INET_DIAG_INFO = 2
INET_DIAG_SHUTDOWN = 8
INET_DIAG_PROTOCOL = 10
INET_DIAG_SKV6ONLY = 11
INET_DIAG_CGROUP_ID = 21
ALL_STATES = 0xFFFFFFFF

_REQ = struct.Struct("=BBBBI")
MSG_SIZE = 72

# include/net/tcp_states.h
_TCP_STATES: dict[int, TcpState] = {
    1: TcpState.ESTABLISHED,
    2: TcpState.SYN_SENT,
    3: TcpState.SYN_RECV,
    4: TcpState.FIN_WAIT1,
    5: TcpState.FIN_WAIT2,
    6: TcpState.TIME_WAIT,
    7: TcpState.CLOSE,
    8: TcpState.CLOSE_WAIT,
    9: TcpState.LAST_ACK,
    10: TcpState.LISTEN,
    11: TcpState.CLOSING,
    12: TcpState.NEW_SYN_RECV,
}

# struct tcp_info offsets (bytes) of the fields we keep; the struct grows over kernel versions, so a
# field past the end of what the kernel sent is None.
_TCPI_U32 = {
    "last_data_recv_ms": 52,
    "rtt_us": 68,
    "rttvar_us": 72,
    "snd_cwnd": 80,
    "total_retrans": 100,
    "segs_out": 136,
    "segs_in": 140,
    "min_rtt_us": 148,
}
_TCPI_U64 = {"bytes_acked": 120, "bytes_received": 128, "bytes_sent": 200}


def build_request(
    family: int, protocol: int, *, states: int = ALL_STATES, tcp_info: bool = False
) -> bytes:
    """Body of a SOCK_DIAG_BY_FAMILY dump request (struct inet_diag_req_v2, 56 bytes).

    Args:
        family: socket.AF_INET or socket.AF_INET6.
        protocol: socket.IPPROTO_TCP or socket.IPPROTO_UDP.
        states: bitmask of kernel states (1 << state); all by default.
        tcp_info: ask for INET_DIAG_INFO (struct tcp_info) on TCP sockets.

    Example: ``len(build_request(socket.AF_INET, socket.IPPROTO_TCP)) == 56``.
    """
    ext = (1 << (INET_DIAG_INFO - 1)) if tcp_info else 0
    return _REQ.pack(family, protocol, ext, 0, states) + b"\0" * 48


def _address(family: int, raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw)


def parse_tcp_info(data: bytes) -> TcpInfo:
    """Decode the fields of ``struct tcp_info`` that loopscope uses.

    Example: 232 bytes whose u32 at offset 68 is 50 -> ``TcpInfo(rtt_us=50, ...)``.
    """
    size = len(data)
    values: dict[str, int | None] = {}
    for name, off in _TCPI_U32.items():
        values[name] = struct.unpack_from("=I", data, off)[0] if off + 4 <= size else None
    for name, off in _TCPI_U64.items():
        values[name] = struct.unpack_from("=Q", data, off)[0] if off + 8 <= size else None
    return TcpInfo(**values)


_HEAD = struct.Struct("=BBBBHH16s16sIIIIIIII")  # whole inet_diag_msg; ports swapped with ntohs
_NLA = struct.Struct("=HH")
_U64 = struct.Struct("=Q")
_INET, _INET6 = Family.INET, Family.INET6
_ntohs = socket.ntohs
_make_record = positional_constructor(
    SocketRecord
)  # field order of SocketRecord, see model/records.py
_ADDR_CACHE: dict[tuple[int, bytes], ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
_tuple_new = tuple.__new__
_NO_OWNERS: tuple[ProcessKey, ...] = ()


def _cached_address(family: int, raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = _ADDR_CACHE.get((family, raw))
    if addr is None:
        addr = _address(family, raw)
        if len(_ADDR_CACHE) < 65536:
            _ADDR_CACHE[(family, raw)] = addr
    return addr


def parse_inet_diag_msg(
    payload: bytes,
    *,
    proto: Proto,
    netns: NetnsId,
    owners: Mapping[int, tuple[ProcessKey, ...]] | None = None,
    endpoints: dict[tuple[bytes, int], Endpoint] | None = None,
) -> SocketRecord:
    """Decode one inet_diag_msg (with attributes) into a SocketRecord.

    For LISTEN sockets ``idiag_rqueue`` is the accept queue length and ``idiag_wqueue`` the backlog
    (net/ipv4/tcp_diag.c ``tcp_diag_get_info``); otherwise both are byte counts. UDP state 7
    (TCP_CLOSE) is reported as ``UNCONN``. The kernel's inode 0 and (for TIME_WAIT) uid 0 mean
    "not reported" and become None.

    Args:
        payload: the message body (after the nlmsghdr).
        proto: which protocol was dumped (the message does not say for TCP/UDP).
        netns: namespace the dump was read in.
        owners: socket inode -> owning processes (from the /proc fd scan), to fill ``owners``.
        endpoints: a cache of decoded endpoints shared by the messages of one dump (listener-side
            endpoints repeat in every connection to them); the caller drops it after the dump.

    Example: a message for a listener on 127.0.0.1:8080 with rqueue 0, wqueue 128 ->
    ``SocketRecord(state=LISTEN, local=Endpoint(127.0.0.1, 8080), accept_queue=0, backlog=128, ...)``.

    Raises:
        ParseError: shorter than 72 bytes, unknown family, or a malformed attribute.
    """
    if len(payload) < MSG_SIZE:
        raise ParseError(
            f"inet_diag_msg too short: {len(payload)} bytes",
            path="netlink",
            line=payload[:16].hex(),
        )
    (
        family,
        state_no,
        _timer,
        _retrans,
        sport,
        dport,
        src,
        dst,
        ifindex,
        cookie_lo,
        cookie_hi,
        _expires,
        rqueue,
        wqueue,
        uid,
        inode,
    ) = _HEAD.unpack_from(payload)
    if family != socket.AF_INET and family != socket.AF_INET6:
        raise ParseError(
            f"unknown address family {family}", path="netlink", line=payload[:16].hex()
        )
    if proto is Proto.UDP and state_no == 7:
        state: TcpState | None = TcpState.UNCONN
    else:
        state = _TCP_STATES.get(state_no)
    if state is None:
        raise ParseError(
            f"unknown socket state {state_no}", path="netlink", line=payload[:16].hex()
        )
    v6only: bool | None = None
    cgroup_id: int | None = None
    info: TcpInfo | None = None
    size = len(payload)
    offset = MSG_SIZE
    while offset + 4 <= size:  # attributes: only the three we keep are decoded
        length, attr_type = _NLA.unpack_from(payload, offset)
        if length < 4 or offset + length > size:
            raise ParseError(
                f"bad attribute length {length} at offset {offset} of {size}",
                path="netlink",
                lineno=offset,
                line=payload[offset : offset + 8].hex(),
            )
        attr_type &= 0x3FFF
        if attr_type == INET_DIAG_SKV6ONLY and length > 4:
            v6only = payload[offset + 4] != 0
        elif attr_type == INET_DIAG_CGROUP_ID and length >= 12:
            cgroup_id = _U64.unpack_from(payload, offset + 4)[0]
        elif attr_type == INET_DIAG_INFO and proto is Proto.TCP:
            info = parse_tcp_info(payload[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    listening = state is TcpState.LISTEN
    no_owner = state is TcpState.TIME_WAIT or state is TcpState.NEW_SYN_RECV
    if endpoints is None:
        endpoints = {}
    local = endpoints.get((src, sport))
    if local is None:
        local = endpoints[(src, sport)] = _tuple_new(
            Endpoint, (_cached_address(family, src), _ntohs(sport))
        )
    remote = endpoints.get((dst, dport))
    if remote is None:
        remote = endpoints[(dst, dport)] = _tuple_new(
            Endpoint, (_cached_address(family, dst), _ntohs(dport))
        )
    return _make_record(
        proto,
        _INET if family == socket.AF_INET else _INET6,
        state,
        local,
        remote,
        netns,
        inode or None,
        cookie_lo | (cookie_hi << 32),
        None if no_owner else uid,
        None if listening else rqueue,
        None if listening else wqueue,
        rqueue if listening else None,
        wqueue if listening else None,
        v6only,
        ifindex or None,
        cgroup_id,
        info,
        owners.get(inode, _NO_OWNERS) if owners is not None and inode else _NO_OWNERS,
    )


_TARGETS = (
    (socket.AF_INET, socket.IPPROTO_TCP, Proto.TCP),
    (socket.AF_INET6, socket.IPPROTO_TCP, Proto.TCP),
    (socket.AF_INET, socket.IPPROTO_UDP, Proto.UDP),
    (socket.AF_INET6, socket.IPPROTO_UDP, Proto.UDP),
)


def dump_sockets(
    transport: Transport,
    *,
    netns: NetnsId,
    protos: Iterable[Proto] = (Proto.TCP, Proto.UDP),
    tcp_info: bool = False,
    owners: Mapping[int, tuple[ProcessKey, ...]] | None = None,
    listening_only: bool = False,
) -> Iterator[SocketRecord]:
    """Dump every TCP and/or UDP socket, IPv4 then IPv6, through ``transport``.

    Four dumps in sequence on one transport (TCP v4, TCP v6, UDP v4, UDP v6; seq 1..4). With
    ``listening_only`` the kernel returns only TCP LISTEN and unconnected UDP sockets (``ss -tul``).

    Raises:
        NetlinkError: the kernel refused a dump (e.g. udp_diag missing: ENOENT).
        ParseError: malformed reply.
    """
    wanted = set(protos)
    endpoints: dict[tuple[bytes, int], Endpoint] = {}  # per call: freed with the dump
    seq = 0
    for family, ipproto, proto in _TARGETS:
        seq += 1
        if proto not in wanted:
            continue
        states = ALL_STATES
        if listening_only:  # TCP LISTEN; UDP sockets that are not connected (TCP_CLOSE)
            states = (1 << 10) if proto is Proto.TCP else (1 << 7)
        req = build_request(
            family, ipproto, states=states, tcp_info=tcp_info and proto is Proto.TCP
        )
        what = f"sock_diag {proto}/{'v4' if family == socket.AF_INET else 'v6'} dump"
        for payload in dump(transport, SOCK_DIAG_BY_FAMILY, req, seq=seq, what=what):
            yield parse_inet_diag_msg(
                payload, proto=proto, netns=netns, owners=owners, endpoints=endpoints
            )


def read_sockets(
    *,
    netns: NetnsId,
    protos: Iterable[Proto] = (Proto.TCP, Proto.UDP),
    tcp_info: bool = False,
    owners: Mapping[int, tuple[ProcessKey, ...]] | None = None,
    listening_only: bool = False,
) -> list[SocketRecord]:
    """Read the sockets of the calling thread's network namespace from the kernel.

    Raises:
        BackendUnavailable: NETLINK_SOCK_DIAG cannot be opened.
        NetlinkError: a dump was refused.
    """
    with KernelTransport(NETLINK_SOCK_DIAG) as transport:
        return list(
            dump_sockets(
                transport,
                netns=netns,
                protos=protos,
                tcp_info=tcp_info,
                owners=owners,
                listening_only=listening_only,
            )
        )

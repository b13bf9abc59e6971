"""Socket sources of the collector, the netlink transports they read through, and the one place a
source is chosen.

A source reads the sockets of one network namespace; the collector calls it inside that namespace
(:func:`~loopscope.backends.linux.netns.run_in_netns`). Netlink is reached through a
:data:`TransportOpener` (protocol number -> transport, opened in the calling thread's namespace), so the
same code runs on the kernel (:func:`kernel_transports`), on recorded bytes (:class:`ReplayTransports`)
or on sockets kept open across reads (:class:`KeptTransports`, what ``watch`` uses).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from loopscope.backends.linux import procfs, sock_diag
from loopscope.backends.linux.netlink import KernelTransport, ReplayTransport, Transport, dump
from loopscope.errors import BackendUnavailable, NetlinkError, UsageError
from loopscope.model import Endpoint, Gap, NetnsId, Proto, SocketRecord, TcpState

__all__ = [
    "SOURCES",
    "Connected",
    "FallbackSource",
    "KeptTransports",
    "ProcfsSource",
    "PsutilSource",
    "Query",
    "ReplayTransports",
    "SockDiagSource",
    "SocketSource",
    "SourceRead",
    "States",
    "TimeWait",
    "TransportOpener",
    "build_port_filter",
    "choose_source",
    "kernel_transports",
    "parse_sockstat_time_wait",
    "read_time_wait_total",
]

SOURCES = ("auto", "sock_diag", "procfs", "psutil")

TransportOpener = Callable[[int], AbstractContextManager[Transport]]
"""Netlink protocol (``NETLINK_SOCK_DIAG``, ``NETLINK_ROUTE``) -> a transport to use in a ``with``
block; called inside the namespace to read."""

# include/net/tcp_states.h: kernel state numbers as dump request bits
_ESTABLISHED, _TIME_WAIT, _CLOSE, _LISTEN = 1 << 1, 1 << 6, 1 << 7, 1 << 10
_TW_STATE, _LISTEN_STATE = 6, 10
# every TCP state but LISTEN (10), CLOSE (7) and TIME_WAIT (6): ESTABLISHED, SYN_SENT, SYN_RECV,
# FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING, NEW_SYN_RECV
_CONNECTED_STATES = frozenset((1, 2, 3, 4, 5, 8, 9, 11, 12))
_CONNECTED = sum(1 << s for s in _CONNECTED_STATES)
# inet_diag_sockid from byte 4 of inet_diag_msg: sport, dport (network order), src (skipped), dst
_SOCKID_PORTS_DST = struct.Struct("!HH16x16s")
# include/uapi/linux/inet_diag.h: struct inet_diag_bc_op {u8 code; u8 yes; u16 no}, op codes
_BC_OP = struct.Struct("=BBH")
_BC_JMP, _BC_S_GE, _BC_S_LE, _BC_D_LE = 1, 2, 3, 5
_INET_DIAG_REQ_BYTECODE = 1
_TARGETS = (
    (socket.AF_INET, socket.IPPROTO_TCP, Proto.TCP),
    (socket.AF_INET6, socket.IPPROTO_TCP, Proto.TCP),
    (socket.AF_INET, socket.IPPROTO_UDP, Proto.UDP),
    (socket.AF_INET6, socket.IPPROTO_UDP, Proto.UDP),
)


class States(StrEnum):
    """Which sockets a read keeps."""

    ALL = "all"
    """Every state."""
    LISTENING = "listening"
    """TCP LISTEN and unconnected UDP (``ss -tul``): what ``ports`` and a probe diagnosis need."""
    LISTENING_ESTABLISHED = "listening+established"
    """Listeners and established connections: what ``watch`` keeps."""


class TimeWait(StrEnum):
    """How TIME_WAIT sockets come back (a busy host holds 100k; a record each costs ~1 s per 50k)."""

    ROWS = "rows"
    """As records, when the states ask for them (``States.ALL``)."""
    COUNTS = "counts"
    """Never as records: counted per destination, whatever the states."""


class Connected(StrEnum):
    """How connected TCP sockets (every state but LISTEN, CLOSE and TIME_WAIT) come back."""

    ROWS = "rows"
    """As records, when the states ask for them."""
    COUNTS = "counts"
    """Never as records, and only the client side: sockets whose local port is in
    ``Query.ephemeral_range`` and is not a listener's port are counted per raw destination in the
    parse loop, their local ports kept as a set (ephemeral ports in use); the others are not read.
    TIME_WAIT, when counted, is filtered the same way (its total comes from net/sockstat). sock_diag
    asks the kernel to filter (an inet_diag bytecode: remote port 0, i.e. listeners, or local port
    in the range), so server-side sockets of listeners outside the range never leave the kernel;
    connected UDP sockets are not read. What the exporter needs, without a record per connection."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """What a source reads in one namespace."""

    protos: tuple[Proto, ...] = (Proto.TCP, Proto.UDP)
    """Protocols to read."""
    states: States = States.ALL
    """Which sockets to keep."""
    time_wait: TimeWait = TimeWait.ROWS
    """TIME_WAIT as records or as counts."""
    connected: Connected = Connected.ROWS
    """Connected TCP sockets as records or as counts."""
    ephemeral_range: tuple[int, int] = (32768, 60999)
    """With ``Connected.COUNTS``: only sockets whose local port is in this range are counted
    (net.ipv4.ip_local_port_range; the collector sets it per namespace)."""
    tcp_info: bool = False
    """Read struct tcp_info for TCP sockets (sock_diag only)."""

    def state_mask(self, proto: Proto) -> int:
        """Kernel state bits to ask for (``1 << state``), TIME_WAIT included when counted."""
        if self.states is States.ALL:
            mask = sock_diag.ALL_STATES
        elif self.states is States.LISTENING:
            mask = _LISTEN if proto is Proto.TCP else _CLOSE
        else:
            mask = (_LISTEN if proto is Proto.TCP else _CLOSE) | _ESTABLISHED
        if self.time_wait is TimeWait.COUNTS and proto is Proto.TCP:
            mask |= _TIME_WAIT
        if self.connected is Connected.COUNTS:
            mask = mask | _CONNECTED if proto is Proto.TCP else mask & _CLOSE
        return mask


@dataclass(slots=True, kw_only=True)
class SourceRead:
    """What a source read in one namespace."""

    sockets: list[SocketRecord]
    """The sockets kept (no TIME_WAIT rows when they are counted)."""
    time_wait: Counter[tuple[int, int, bytes]] = field(default_factory=Counter)
    """TIME_WAIT sockets per raw destination ``(family, port, address bytes)``, with
    ``TimeWait.COUNTS``; one Counter key per destination, no object per socket."""
    connected: Counter[tuple[int, int, bytes]] = field(default_factory=Counter)
    """Connected TCP sockets per raw destination ``(family, port, address bytes)``, with
    ``Connected.COUNTS``."""
    connected_ports: set[int] = field(default_factory=set)
    """Local ports of those connected sockets, with ``Connected.COUNTS``."""
    source: str
    """Name of the source that answered."""
    gaps: list[Gap] = field(default_factory=list)
    """What it could not read."""


class SocketSource(Protocol):
    """Reads the sockets of the calling thread's network namespace."""

    @property
    def name(self) -> str:
        """``sock_diag``, ``procfs``, ``psutil`` or ``auto``."""
        ...

    def read(self, netns: NetnsId, query: Query) -> SourceRead:
        """The sockets of the namespace ``netns`` (the caller runs this inside it).

        Raises:
            BackendUnavailable: the source cannot work here.
            NetlinkError: the kernel refused a dump.
        """
        ...


def kernel_transports(protocol: int) -> AbstractContextManager[Transport]:
    """A new kernel netlink socket of ``protocol`` in the calling thread's namespace.

    Raises:
        BackendUnavailable: the socket cannot be opened.
    """
    return KernelTransport(protocol)


class ReplayTransports:
    """Recorded reply datagrams per netlink protocol; each open replays them from the start.

    Args:
        datagrams: protocol -> the datagrams a :class:`~loopscope.backends.linux.netlink.RecordingTransport`
            kept (``testing.record`` writes them).
    """

    def __init__(self, datagrams: Mapping[int, Sequence[bytes]]) -> None:
        self._datagrams = {proto: list(data) for proto, data in datagrams.items()}

    def __call__(self, protocol: int) -> AbstractContextManager[Transport]:
        """A :class:`ReplayTransport` of the protocol's recording.

        Raises:
            BackendUnavailable: nothing was recorded for this protocol.
        """
        if protocol not in self._datagrams:
            raise BackendUnavailable(f"no recording for netlink protocol {protocol}")
        return contextlib.nullcontext(ReplayTransport(self._datagrams[protocol]))


class KeptTransports:
    """Kernel netlink sockets opened on first use (in the namespace of that first call) and kept:
    a socket stays bound to the namespace it was created in, so later reads need no setns().
    :meth:`close` releases them."""

    def __init__(self) -> None:
        self._open: dict[int, KernelTransport] = {}

    def __call__(self, protocol: int) -> AbstractContextManager[Transport]:
        """The kept socket of ``protocol`` (opened now if it is the first call).

        Raises:
            BackendUnavailable: the socket cannot be opened.
        """
        transport = self._open.get(protocol)
        if transport is None:
            transport = self._open[protocol] = KernelTransport(protocol)
        return contextlib.nullcontext(transport)

    def close(self) -> None:
        """Close every kept socket."""
        for transport in self._open.values():
            transport.close()
        self._open.clear()


def build_port_filter(low: int, high: int) -> bytes:
    """An ``INET_DIAG_REQ_BYTECODE`` attribute: keep a socket when its remote port is 0 (listeners)
    or its local port is in ``[low, high]`` (net/ipv4/inet_diag.c ``inet_diag_bc_run``; ``ss`` compiles
    ``dport = 0 or (sport >= low and sport <= high)`` the same way).

    A jump lands on the next op (``yes``) or ``no`` bytes on; landing exactly on the end accepts,
    4 bytes past it rejects.

    Example: ``len(build_port_filter(32768, 60999)) == 32`` (4-byte attribute header + 7 ops).
    """
    total = 28
    ops = (
        _BC_OP.pack(_BC_D_LE, 8, 12),  # 0: dport <= 0 -> 8, else -> 12
        _BC_OP.pack(0, 0, 0),
        _BC_OP.pack(_BC_JMP, 4, total - 8),  # 8: a listener: jump to the end (accept)
        _BC_OP.pack(_BC_S_GE, 8, total + 4 - 12),  # 12: sport >= low, else reject
        _BC_OP.pack(0, 0, low),
        _BC_OP.pack(_BC_S_LE, 8, total + 4 - 20),  # 20: sport <= high, else reject
        _BC_OP.pack(0, 0, high),
    )
    code = b"".join(ops)
    return struct.pack("=HH", 4 + len(code), _INET_DIAG_REQ_BYTECODE) + code


def parse_sockstat_time_wait(text: str) -> int | None:
    """The ``tw`` field of the ``TCP:`` line of /proc/net/sockstat (TIME_WAIT sockets of the
    namespace, IPv4 and IPv6: ``net->ipv4.tcp_death_row.tw_refcount``), None without one.

    Example: ``parse_sockstat_time_wait("TCP: inuse 5 orphan 0 tw 15 alloc 6 mem 1\n") == 15``.
    """
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["TCP:"] and "tw" in fields[1:-1]:
            value = fields[fields.index("tw") + 1]
            return int(value) if value.isascii() and value.isdigit() else None
    return None


def read_time_wait_total(root: procfs.ProcRoot) -> int | None:
    """TIME_WAIT sockets of the namespace from ``root``/net/sockstat (``/proc/thread-self``: the
    reading thread's namespace); None when it cannot be read (a recorded tree without it)."""
    try:
        with open(root.join("net", "sockstat"), encoding="ascii", errors="replace") as fh:
            return parse_sockstat_time_wait(fh.read())
    except OSError:
        return None


def _count_time_wait(counts: Counter[tuple[int, int, bytes]], family: int, payload: bytes) -> None:
    _sport, dport, dst = _SOCKID_PORTS_DST.unpack_from(payload, 4)
    counts[(family, dport, dst)] += 1


@dataclass(frozen=True, slots=True)
class SockDiagSource:
    """NETLINK_SOCK_DIAG dumps (what ``ss`` uses): every field, ~1.6 ms per 1k sockets."""

    transports: TransportOpener = kernel_transports
    """Where the netlink socket comes from (kernel, replay, kept)."""
    name: str = "sock_diag"
    """Source name in snapshots."""

    def read(self, netns: NetnsId, query: Query) -> SourceRead:
        """Four dumps (TCP v4, v6, UDP v4, v6; seq 1..4) on one transport.

        With every state as rows this is :func:`~loopscope.backends.linux.sock_diag.dump_sockets`
        unchanged (the hot path); otherwise the kernel filters by state, TIME_WAIT messages are counted
        by destination without a record, and the state is checked again here (a replayed recording
        holds every state).

        Raises:
            BackendUnavailable: the netlink socket cannot be opened.
            NetlinkError: a dump was refused (e.g. udp_diag missing).
        """
        with self.transports(sock_diag.NETLINK_SOCK_DIAG) as transport:
            if (
                query.time_wait is TimeWait.ROWS
                and query.connected is Connected.ROWS
                and query.states is not States.LISTENING_ESTABLISHED
            ):
                sockets = list(
                    sock_diag.dump_sockets(
                        transport,
                        netns=netns,
                        protos=query.protos,
                        tcp_info=query.tcp_info,
                        listening_only=query.states is States.LISTENING,
                    )
                )
                if query.states is States.LISTENING:  # a replayed recording holds every state
                    sockets = [s for s in sockets if s.state in _LISTENING_STATES]
                return SourceRead(sockets=sockets, source=self.name)
            return self._read_filtered(transport, netns, query)

    def _read_filtered(self, transport: Transport, netns: NetnsId, query: Query) -> SourceRead:
        sockets: list[SocketRecord] = []
        counts: Counter[tuple[int, int, bytes]] = Counter()
        endpoints: dict[tuple[bytes, int], Endpoint] = {}
        count_tw = query.time_wait is TimeWait.COUNTS
        count_conn = query.connected is Connected.COUNTS
        conn: Counter[tuple[int, int, bytes]] = Counter()
        ports: set[int] = set()
        listen_ports: set[int] = set()
        low, high = query.ephemeral_range
        bytecode = build_port_filter(low, high) if count_conn else b""
        unpack = _SOCKID_PORTS_DST.unpack_from
        parse = sock_diag.parse_inet_diag_msg
        for seq, (family, ipproto, proto) in enumerate(_TARGETS, start=1):
            if proto not in query.protos:
                continue
            mask = query.state_mask(proto)
            req = sock_diag.build_request(
                family, ipproto, states=mask, tcp_info=query.tcp_info and proto is Proto.TCP
            )
            if count_conn and proto is Proto.TCP:
                req += bytecode
            what = f"sock_diag {proto}/{'v4' if family == socket.AF_INET else 'v6'} dump"
            for payload in dump(transport, sock_diag.SOCK_DIAG_BY_FAMILY, req, seq=seq, what=what):
                state_no = payload[1] if len(payload) > 1 else 0
                if count_conn and proto is Proto.TCP and state_no != _LISTEN_STATE:
                    # a replayed recording is not filtered by the kernel: check here too; listeners
                    # come first in a dump (the listening hash is walked before the established one)
                    sport, dport, dst = unpack(payload, 4)
                    if not low <= sport <= high or sport in listen_ports:
                        continue
                    if state_no == _TW_STATE:
                        if count_tw:
                            counts[(family, dport, dst)] += 1
                    elif state_no in _CONNECTED_STATES:
                        ports.add(sport)
                        conn[(family, dport, dst)] += 1
                elif count_tw and state_no == _TW_STATE and proto is Proto.TCP:
                    _count_time_wait(counts, family, payload)
                elif count_conn and state_no in _CONNECTED_STATES:
                    continue  # connected UDP sockets are not read with Connected.COUNTS
                elif (1 << state_no) & mask:
                    sock = parse(payload, proto=proto, netns=netns, endpoints=endpoints)
                    sockets.append(sock)
                    if count_conn and state_no == _LISTEN_STATE:
                        listen_ports.add(sock.local.port)
        return SourceRead(
            sockets=sockets,
            time_wait=counts,
            connected=conn,
            connected_ports=ports,
            source=self.name,
        )


_THREAD_SELF = procfs.ProcRoot("/proc/thread-self")
_LISTENING_STATES = (TcpState.LISTEN, TcpState.UNCONN)


def _raw_destination(sock: SocketRecord) -> tuple[int, int, bytes]:
    """``(family, port, 16 address bytes)`` of a record's remote end, as the netlink counts key it."""
    family = socket.AF_INET if sock.remote.address.version == 4 else socket.AF_INET6
    return (family, sock.remote.port, sock.remote.address.packed.ljust(16, b"\0"))


def _keep(sock: SocketRecord, query: Query) -> bool:
    if query.states is States.ALL or sock.is_listener:
        return True
    return query.states is States.LISTENING_ESTABLISHED and sock.state is TcpState.ESTABLISHED


@dataclass(frozen=True, slots=True)
class ProcfsSource:
    """/proc/net/{tcp,udp}{,6}: no backlog, cookie, tcp_info or IPV6_V6ONLY."""

    root: procfs.ProcRoot = _THREAD_SELF
    """Where ``net/`` is; /proc/thread-self shows the reading thread's namespace (/proc/net follows
    the main thread's)."""
    name: str = "procfs"
    """Source name in snapshots."""

    def read(self, netns: NetnsId, query: Query) -> SourceRead:
        """Parse the four tables, keep the asked states, count TIME_WAIT rows when asked.

        Raises:
            ParseError: a malformed line.
        """
        counts: Counter[tuple[int, int, bytes]] = Counter()
        conn: Counter[tuple[int, int, bytes]] = Counter()
        ports: set[int] = set()
        count_conn = query.connected is Connected.COUNTS
        listen_ports: set[int] = set()  # listeners come first in the tables (listening hash)
        low, high = query.ephemeral_range
        sockets: list[SocketRecord] = []
        for sock in procfs.read_proc_net(netns=netns, root=self.root, protos=query.protos):
            client_side = low <= sock.local.port <= high and sock.local.port not in listen_ports
            if count_conn and sock.proto is Proto.TCP and sock.state not in _LISTENING_STATES:
                if not client_side:
                    continue
                if sock.state is TcpState.TIME_WAIT:
                    if query.time_wait is TimeWait.COUNTS:
                        counts[_raw_destination(sock)] += 1
                elif sock.state is not TcpState.CLOSE:
                    ports.add(sock.local.port)
                    conn[_raw_destination(sock)] += 1
            elif sock.state is TcpState.TIME_WAIT and query.time_wait is TimeWait.COUNTS:
                counts[_raw_destination(sock)] += 1
            elif count_conn and sock.proto is Proto.UDP and sock.state is not TcpState.UNCONN:
                continue  # connected UDP sockets are not read with Connected.COUNTS
            elif _keep(sock, query):
                sockets.append(sock)
                if count_conn and sock.state is TcpState.LISTEN:
                    listen_ports.add(sock.local.port)
        gap = Gap(
            what="backlog, socket cookie, tcp_info, IPV6_V6ONLY",
            reason="/proc/net tables do not carry them (source procfs)",
        )
        return SourceRead(
            sockets=sockets,
            time_wait=counts,
            connected=conn,
            connected_ports=ports,
            source=self.name,
            gaps=[gap],
        )


@dataclass(frozen=True, slots=True)
class FallbackSource:
    """``first``; when it is unavailable here, ``then`` with a gap that says why."""

    first: SocketSource
    """The preferred source."""
    then: SocketSource
    """The fallback."""
    name: str = "auto"
    """Source name asked for."""

    def read(self, netns: NetnsId, query: Query) -> SourceRead:
        """Read with ``first``, or ``then`` when ``first`` raises BackendUnavailable / NetlinkError."""
        try:
            return self.first.read(netns, query)
        except (BackendUnavailable, NetlinkError) as exc:
            fell = self.then.read(netns, query)
            fell.gaps.insert(
                0,
                Gap(
                    what=self.first.name,
                    reason=f"{exc}; fell back to /proc/net (no backlog, cookie, tcp_info)",
                ),
            )
            return fell


@dataclass(frozen=True, slots=True)
class PsutilSource:
    """psutil (other systems): no queues, one namespace; it reads owners and interfaces itself, so the
    collector takes its whole snapshot from it."""

    name: str = "psutil"
    """Source name in snapshots."""

    def read(self, netns: NetnsId, query: Query) -> SourceRead:
        """Sockets only (the collector uses :mod:`~loopscope.backends.portable.psutil_backend` whole).

        Raises:
            BackendUnavailable: psutil is not installed.
        """
        from loopscope.backends.portable.psutil_backend import read_psutil

        sockets, _processes, _denied = read_psutil(netns)
        return SourceRead(sockets=[s for s in sockets if _keep(s, query)], source=self.name)


def choose_source(
    name: str = "auto", transports: TransportOpener = kernel_transports
) -> SocketSource:
    """The one place a socket source is chosen.

    1. Linux: ``sock_diag`` (netlink; every field, ~1.6 ms per 1k sockets).
    2. Linux without NETLINK_SOCK_DIAG (``auto`` falls back per namespace): ``procfs``.
    3. Other systems, or asked for: ``psutil`` (no queues, one namespace).

    Raises:
        UsageError: an unknown source name.
    """
    if name not in SOURCES:
        raise UsageError(f"unknown source {name!r}: use one of {', '.join(SOURCES)}")
    if name == "psutil" or not sys.platform.startswith("linux"):
        return PsutilSource()
    if name == "sock_diag":
        return SockDiagSource(transports)
    if name == "procfs":
        return ProcfsSource()
    return FallbackSource(SockDiagSource(transports), ProcfsSource())

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
    "choose_source",
    "kernel_transports",
]

SOURCES = ("auto", "sock_diag", "procfs", "psutil")

TransportOpener = Callable[[int], AbstractContextManager[Transport]]
"""Netlink protocol (``NETLINK_SOCK_DIAG``, ``NETLINK_ROUTE``) -> a transport to use in a ``with``
block; called inside the namespace to read."""

# include/net/tcp_states.h: kernel state numbers as dump request bits
_ESTABLISHED, _TIME_WAIT, _CLOSE, _LISTEN = 1 << 1, 1 << 6, 1 << 7, 1 << 10
_TW_STATE = 6
_SOCKID_DST = struct.Struct("!2xH16s")  # dport, dst: from byte 6 of inet_diag_msg (sockid at 4)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """What a source reads in one namespace."""

    protos: tuple[Proto, ...] = (Proto.TCP, Proto.UDP)
    """Protocols to read."""
    states: States = States.ALL
    """Which sockets to keep."""
    time_wait: TimeWait = TimeWait.ROWS
    """TIME_WAIT as records or as counts."""
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
        return mask


@dataclass(slots=True, kw_only=True)
class SourceRead:
    """What a source read in one namespace."""

    sockets: list[SocketRecord]
    """The sockets kept (no TIME_WAIT rows when they are counted)."""
    time_wait: Counter[tuple[int, int, bytes]] = field(default_factory=Counter)
    """TIME_WAIT sockets per raw destination ``(family, port, address bytes)``, with
    ``TimeWait.COUNTS``; one Counter key per destination, no object per socket."""
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


def _count_time_wait(counts: Counter[tuple[int, int, bytes]], family: int, payload: bytes) -> None:
    dport, dst = _SOCKID_DST.unpack_from(payload, 4)
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
        parse = sock_diag.parse_inet_diag_msg
        for seq, (family, ipproto, proto) in enumerate(_TARGETS, start=1):
            if proto not in query.protos:
                continue
            mask = query.state_mask(proto)
            req = sock_diag.build_request(
                family, ipproto, states=mask, tcp_info=query.tcp_info and proto is Proto.TCP
            )
            what = f"sock_diag {proto}/{'v4' if family == socket.AF_INET else 'v6'} dump"
            for payload in dump(transport, sock_diag.SOCK_DIAG_BY_FAMILY, req, seq=seq, what=what):
                state_no = payload[1] if len(payload) > 1 else 0
                if count_tw and state_no == _TW_STATE and proto is Proto.TCP:
                    _count_time_wait(counts, family, payload)
                elif (1 << state_no) & mask:
                    sockets.append(parse(payload, proto=proto, netns=netns, endpoints=endpoints))
        return SourceRead(sockets=sockets, time_wait=counts, source=self.name)


_THREAD_SELF = procfs.ProcRoot("/proc/thread-self")
_LISTENING_STATES = (TcpState.LISTEN, TcpState.UNCONN)


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
        sockets: list[SocketRecord] = []
        for sock in procfs.read_proc_net(netns=netns, root=self.root, protos=query.protos):
            if sock.state is TcpState.TIME_WAIT and query.time_wait is TimeWait.COUNTS:
                family = socket.AF_INET if sock.remote.address.version == 4 else socket.AF_INET6
                dst = sock.remote.address.packed.ljust(16, b"\0")
                counts[(family, sock.remote.port, dst)] += 1
            elif _keep(sock, query):
                sockets.append(sock)
        gap = Gap(
            what="backlog, socket cookie, tcp_info, IPV6_V6ONLY",
            reason="/proc/net tables do not carry them (source procfs)",
        )
        return SourceRead(sockets=sockets, time_wait=counts, source=self.name, gaps=[gap])


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

"""Light periodic snapshots for watch: only what watch keeps, read with the sock_diag and procfs backends.

A full ``collect.take_snapshot`` parses every TIME_WAIT row into a record (50k rows on a busy host take
over a second in Python). Watch needs listeners, established connections and their owners, plus
*counts* of TIME_WAIT per destination. So: one sock_diag dump per family with the kernel state filter
``LISTEN | ESTABLISHED`` parsed by :func:`~loopscope.backends.linux.sock_diag.parse_inet_diag_msg`, and
one TIME_WAIT dump whose messages are only counted by destination (the 48-byte sockid is read with
``struct``, no records). Owners come from a /proc fd scan limited to the processes of the namespace; that full read runs at an
adaptive cadence (the session keeps its cost near 5% of a core), listener reads (accept queues) at every
interval. Addresses and sysctls are read once.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, replace

from loopscope.backends.linux import procfs, rtnl
from loopscope.backends.linux.netlink import KernelTransport, dump
from loopscope.backends.linux.netns import NetnsTarget, run_in_netns
from loopscope.backends.linux.sock_diag import (
    NETLINK_SOCK_DIAG,
    SOCK_DIAG_BY_FAMILY,
    build_request,
    parse_inet_diag_msg,
)
from loopscope.errors import BackendUnavailable, LoopscopeError, NetlinkError
from loopscope.model import (
    Endpoint,
    Gap,
    InterfaceAddress,
    NetnsId,
    ProcessInfo,
    ProcessKey,
    Proto,
    Snapshot,
    SocketRecord,
    StackFacts,
    TcpState,
)

__all__ = [
    "LightSnapshot",
    "NamespaceReader",
    "read_light_snapshot",
    "read_namespace_facts",
    "scan_owners_in_netns",
]

_LISTEN = 1 << 10  # TCP_LISTEN
_LISTEN_EST = _LISTEN | (1 << 1)  # TCP_LISTEN, TCP_ESTABLISHED
_TIME_WAIT = 1 << 6
_SOCKID_DST = struct.Struct(
    "!2xH16x16s"
)  # dport, dst (after sport and the 16-byte src), from byte 4


@dataclass(frozen=True, slots=True, kw_only=True)
class LightSnapshot:
    """A snapshot restricted to listeners and established sockets, with TIME_WAIT counted by destination."""

    snapshot: Snapshot
    """Listeners and established TCP sockets with owners."""
    time_wait_by_dest: dict[Endpoint, int]
    """TIME_WAIT sockets per destination listener (client-side TIME_WAIT holding ephemeral ports)."""
    time_wait_other: int = 0
    """The other TIME_WAIT sockets (server side, remote destinations): counted only."""
    full: bool
    """False for a listener-only read (no established sockets, no TIME_WAIT counts)."""


def _count_time_wait(
    transport: KernelTransport, family: int, seq: int
) -> Counter[tuple[int, bytes]]:
    """TIME_WAIT sockets per raw ``(dport, dst)`` (no objects per row: a busy namespace holds 100k)."""
    req = build_request(family, socket.IPPROTO_TCP, states=_TIME_WAIT)
    unpack = _SOCKID_DST.unpack_from
    return Counter(
        unpack(payload, 4)
        for payload in dump(
            transport, SOCK_DIAG_BY_FAMILY, req, seq=seq, what="sock_diag TIME_WAIT dump"
        )
    )


def _by_listener(
    raw: Counter[tuple[int, bytes]], family: int, ports: set[int]
) -> tuple[Counter[Endpoint], int]:
    """Split raw TIME_WAIT counts into per-destination counts toward listener ports (the ones that hold
    ephemeral ports of local clients) and the number of the others (server-side TIME_WAIT, remote
    destinations)."""
    counts: Counter[Endpoint] = Counter()
    other = 0
    for (dport, dst), n in raw.items():
        if dport in ports:
            addr = (
                ipaddress.IPv4Address(dst[:4])
                if family == socket.AF_INET
                else ipaddress.IPv6Address(dst)
            )
            counts[Endpoint(addr, dport)] += n
        else:
            other += n
    return counts, other


class NamespaceReader:
    """A NETLINK_SOCK_DIAG socket opened once inside the target namespace and kept: sockets stay bound
    to the namespace they were created in, so later dumps need no thread and no setns().

    Raises:
        BackendUnavailable / NetnsError: the socket cannot be opened there.
    """

    def __init__(self, target: NetnsTarget) -> None:
        self.target = target
        self.transport = run_in_netns(target, lambda: KernelTransport(NETLINK_SOCK_DIAG))
        self._seq = 0

    def read(self, full: bool) -> tuple[list[SocketRecord], Counter[Endpoint], int]:
        """Listeners (and, when ``full``, established sockets, TIME_WAIT counts per destination
        listener and the count of the other TIME_WAIT sockets)."""
        sockets: list[SocketRecord] = []
        tw: Counter[Endpoint] = Counter()
        tw_other = 0
        states = _LISTEN_EST if full else _LISTEN
        for family in (socket.AF_INET, socket.AF_INET6):
            self._seq += 1
            req = build_request(family, socket.IPPROTO_TCP, states=states)
            for payload in dump(
                self.transport, SOCK_DIAG_BY_FAMILY, req, seq=self._seq, what="sock_diag dump"
            ):
                sockets.append(parse_inet_diag_msg(payload, proto=Proto.TCP, netns=self.target.id))
            if full:
                self._seq += 1
                ports = {s.local.port for s in sockets if s.state is TcpState.LISTEN}
                counts, other = _by_listener(
                    _count_time_wait(self.transport, family, self._seq), family, ports
                )
                tw.update(counts)
                tw_other += other
        return sockets, tw, tw_other

    def close(self) -> None:
        """Close the socket."""
        self.transport.close()


def scan_owners_in_netns(netns: NetnsId, want: set[int]) -> tuple[dict[int, list[ProcessKey]], int]:
    """Socket inode -> owner keys, reading the fd tables of processes in ``netns`` only.

    A busy host can hold 100k socket fds in other namespaces' or unrelated processes; reading every fd
    takes over a second. Processes are filtered by ``/proc/PID/ns/net`` first (one stat each). A socket
    passed to a process in another namespace is missed (rare).

    Returns:
        (owners, processes whose fd table was unreadable).
    """
    owners: dict[int, list[ProcessKey]] = {}
    denied = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except PermissionError:
            denied += 1  # its namespace is unknown: it may hold sockets of this one
            continue
        except OSError:
            continue  # exited
        if NetnsId(st.st_dev, st.st_ino) != netns:
            continue
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            denied += 1
            continue
        except OSError:
            continue  # exited
        found = set()
        for name in names:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inode = int(link[8:-1])
                if inode in want:
                    found.add(inode)
        if not found:
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                ticks = procfs.parse_stat(fh.read())[3]
        except (OSError, LoopscopeError):
            continue
        for inode in found:
            owners.setdefault(inode, []).append(ProcessKey(int(pid), ticks))
    return owners, denied


def read_namespace_facts(
    target: NetnsTarget,
) -> tuple[list[InterfaceAddress], StackFacts, list[Gap]]:
    """Addresses and sysctls of the namespace (read once per watch)."""
    gaps: list[Gap] = []

    def inside() -> tuple[list[InterfaceAddress], StackFacts]:
        try:
            _links, addrs = rtnl.read_addresses()
        except (BackendUnavailable, NetlinkError) as exc:
            gaps.append(
                Gap(
                    what="interface addresses",
                    reason=f"{exc}; only 127/8 and ::1 count as loopback",
                )
            )
            addrs = []
        return addrs, procfs.read_stack_facts(procfs.ProcRoot("/proc"))

    addrs, stack = run_in_netns(target, inside)
    return addrs, stack, gaps


def read_light_snapshot(
    reader: NamespaceReader,
    addresses: list[InterfaceAddress],
    stack: StackFacts,
    known: dict[ProcessKey, ProcessInfo],
    owner_cache: dict[int, list[ProcessKey]],
    *,
    full: bool,
) -> LightSnapshot:
    """Listeners (always) and, when ``full``, established sockets with owners and TIME_WAIT counts.

    Args:
        reader: the namespace's kept sock_diag socket.
        addresses: its addresses (from :func:`read_namespace_facts`).
        stack: its sysctls.
        known: process details already read (updated in place).
        owner_cache: socket inode -> owners from the last full read (updated in place by a full read;
            a listener-only read uses it, so it costs one small dump).
        full: also read established sockets, TIME_WAIT counts and scan /proc for owners.

    Raises:
        BackendUnavailable / NetlinkError: sock_diag is not usable.
    """
    started_ns = time.time_ns()
    t0 = time.perf_counter_ns()
    target = reader.target
    sockets, tw, tw_other = reader.read(full)
    denied = 0
    if full:
        owners, denied = scan_owners_in_netns(
            target.id, {s.inode for s in sockets if s.inode is not None}
        )
        owner_cache.clear()
        owner_cache.update(owners)
    out: list[SocketRecord] = []
    procs: dict[ProcessKey, ProcessInfo] = {}
    for sock in sockets:
        keys = owner_cache.get(sock.inode or -1, [])
        for key in keys:
            if key not in known:
                info = procfs.read_process(key)
                if info is not None:
                    known[key] = info
            if key in known:
                procs[key] = known[key]
        if keys:
            sock = replace(sock, owners=tuple(k for k in keys if k in procs))
        out.append(sock)
    gaps = []
    if denied:
        gaps.append(
            Gap(
                what=f"fd tables of {denied} processes",
                count=denied,
                reason="permission denied: owners need root with full capabilities (a few "
                "processes stay protected even then)",
            )
        )
    snap = Snapshot(
        taken_at_ns=started_ns,
        netns=target.id,
        netns_label=target.label,
        source="sock_diag",
        sockets=tuple(out),
        processes=procs,
        addresses=tuple(addresses),
        stack=stack,
        gaps=tuple(gaps),
        duration_ns=time.perf_counter_ns() - t0,
    )
    return LightSnapshot(
        snapshot=snap, time_wait_by_dest=dict(tw), time_wait_other=tw_other, full=full
    )

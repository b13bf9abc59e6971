"""Light periodic snapshots for watch: only what watch keeps, read with the sock_diag and procfs backends.

A full ``collect.take_snapshot`` parses every TIME_WAIT row into a record (50k rows on a busy host take
over a second in Python). Watch needs listeners, established connections and their owners, plus
*counts* of TIME_WAIT per destination. So: one sock_diag dump per family with the kernel state filter
``LISTEN | ESTABLISHED`` parsed by :func:`~loopscope.backends.linux.sock_diag.parse_inet_diag_msg`, and
one TIME_WAIT dump whose messages are only counted by destination (the 48-byte sockid is read with
``struct``, no records). Owners come from the shared /proc fd scan. Addresses and sysctls are read once.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass

from loopscope.backends.linux import procfs, rtnl
from loopscope.backends.linux.netlink import KernelTransport, dump
from loopscope.backends.linux.netns import NetnsTarget, netns_id_of, run_in_netns
from loopscope.backends.linux.sock_diag import (
    NETLINK_SOCK_DIAG,
    SOCK_DIAG_BY_FAMILY,
    build_request,
    parse_inet_diag_msg,
)
from loopscope.errors import BackendUnavailable, NetlinkError
from loopscope.model import (
    Endpoint,
    Gap,
    InterfaceAddress,
    ProcessInfo,
    ProcessKey,
    Proto,
    Snapshot,
    SocketRecord,
    StackFacts,
)

__all__ = ["LightSnapshot", "read_light_snapshot", "read_namespace_facts"]

_LISTEN_EST = (1 << 10) | (1 << 1)  # TCP_LISTEN, TCP_ESTABLISHED
_TIME_WAIT = 1 << 6
_SOCKID_DST = struct.Struct("!2xH4x16s")  # dport, dst (after sport); offsets from byte 4 of inet_diag_msg


@dataclass(frozen=True, slots=True, kw_only=True)
class LightSnapshot:
    """A snapshot restricted to listeners and established sockets, with TIME_WAIT counted by destination."""

    snapshot: Snapshot
    """Listeners and established TCP sockets with owners."""
    time_wait_by_dest: dict[Endpoint, int]
    """TIME_WAIT sockets per remote endpoint (the client side of loopback connections)."""


def _count_time_wait(transport: KernelTransport, family: int, seq: int) -> Counter[Endpoint]:
    counts: Counter[Endpoint] = Counter()
    req = build_request(family, socket.IPPROTO_TCP, states=_TIME_WAIT)
    for payload in dump(transport, SOCK_DIAG_BY_FAMILY, req, seq=seq, what="sock_diag TIME_WAIT dump"):
        dport, dst = _SOCKID_DST.unpack_from(payload, 4)
        addr = ipaddress.IPv4Address(dst[:4]) if family == socket.AF_INET else ipaddress.IPv6Address(dst)
        counts[Endpoint(addr, dport)] += 1
    return counts


def _read_inside() -> tuple[list[SocketRecord], Counter[Endpoint]]:
    netns = netns_id_of("/proc/thread-self/ns/net")
    sockets: list[SocketRecord] = []
    tw: Counter[Endpoint] = Counter()
    with KernelTransport(NETLINK_SOCK_DIAG) as transport:
        seq = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            seq += 1
            req = build_request(family, socket.IPPROTO_TCP, states=_LISTEN_EST)
            for payload in dump(transport, SOCK_DIAG_BY_FAMILY, req, seq=seq, what="sock_diag dump"):
                sockets.append(parse_inet_diag_msg(payload, proto=Proto.TCP, netns=netns))
            seq += 1
            tw.update(_count_time_wait(transport, family, seq))
    return sockets, tw


def read_namespace_facts(target: NetnsTarget) -> tuple[list[InterfaceAddress], StackFacts, list[Gap]]:
    """Addresses and sysctls of the namespace (read once per watch)."""
    gaps: list[Gap] = []

    def inside() -> tuple[list[InterfaceAddress], StackFacts]:
        try:
            _links, addrs = rtnl.read_addresses()
        except (BackendUnavailable, NetlinkError) as exc:
            gaps.append(Gap(what="interface addresses", reason=f"{exc}; only 127/8 and ::1 count as loopback"))
            addrs = []
        return addrs, procfs.read_stack_facts(procfs.ProcRoot("/proc"))

    addrs, stack = run_in_netns(target, inside)
    return addrs, stack, gaps


def read_light_snapshot(target: NetnsTarget, addresses: list[InterfaceAddress], stack: StackFacts,
                        known: dict[ProcessKey, ProcessInfo]) -> LightSnapshot:
    """Listeners and established sockets of ``target`` with owners (one /proc fd scan), TIME_WAIT counts.

    Args:
        target: the namespace.
        addresses: its addresses (from :func:`read_namespace_facts`).
        stack: its sysctls.
        known: process details already read (updated in place; saves a /proc read per owner).

    Raises:
        BackendUnavailable / NetlinkError: sock_diag is not usable.
    """
    started_ns = time.time_ns()
    t0 = time.perf_counter_ns()
    sockets, tw = run_in_netns(target, _read_inside)
    scan = procfs.scan_socket_owners(want={s.inode for s in sockets if s.inode is not None})
    out: list[SocketRecord] = []
    procs: dict[ProcessKey, ProcessInfo] = {}
    for sock in sockets:
        keys = scan.owners.get(sock.inode or -1, [])
        for key in keys:
            if key not in known:
                info = procfs.read_process(key)
                if info is not None:
                    known[key] = info
            if key in known:
                procs[key] = known[key]
        if keys:
            from dataclasses import replace

            sock = replace(sock, owners=tuple(k for k in keys if k in procs))
        out.append(sock)
    gaps = []
    if scan.denied_pids:
        gaps.append(Gap(what=f"fd tables of {scan.denied_pids} processes", reason="permission denied: run as root",
                        count=scan.denied_pids))
    snap = Snapshot(taken_at_ns=started_ns, netns=target.id, netns_label=target.label, source="sock_diag",
                    sockets=tuple(out), processes=procs, addresses=tuple(addresses), stack=stack, gaps=tuple(gaps),
                    duration_ns=time.perf_counter_ns() - t0)
    return LightSnapshot(snapshot=snap, time_wait_by_dest=dict(tw))

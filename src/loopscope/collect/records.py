"""The collector's results and options: what one run read, and whose owners it attributes.

``OwnerScope`` says which sockets get owners; a :class:`Collection` holds one :class:`Reading` per
namespace (the snapshot plus TIME_WAIT counts), the namespaces that could not be entered, and the fd scan
used (to reuse it). :func:`split_time_wait` and :func:`owner_gaps` turn raw counts into those values.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from loopscope.backends.linux.netns import NetnsTarget
from loopscope.backends.linux.procfs import OwnerScan
from loopscope.model import Endpoint, Gap, NetnsId, Snapshot, SocketRecord, TcpState

__all__ = [
    "Collection",
    "NetnsSpec",
    "OwnerScope",
    "Reading",
    "SkippedNetns",
    "owner_gaps",
    "split_time_wait",
    "take_psutil",
]

NetnsSpec = str | NetnsTarget | None
"""None (this namespace), a /run/netns name, a pid, an nsfs path, or an already resolved target."""


class OwnerScope(StrEnum):
    """Whose owners a read attributes (the /proc fd scan is the expensive part)."""

    ALL = "all"
    """Every socket."""
    LISTENERS = "listeners"
    """Listeners only (the "app" of a port)."""
    NONE = "none"
    """No fd scan (``--no-processes``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One namespace as read: the snapshot, and TIME_WAIT counts when they were not rows."""

    target: NetnsTarget
    """The namespace read."""
    snapshot: Snapshot
    """The sockets kept, with owners, links, addresses and sysctls."""
    time_wait_by_dest: dict[Endpoint, int] = field(default_factory=dict)
    """With ``TimeWait.COUNTS``: TIME_WAIT sockets per destination listener of this namespace
    (client-side TIME_WAIT holding ephemeral ports); empty otherwise."""
    time_wait_other: int = 0
    """With ``TimeWait.COUNTS``: the other TIME_WAIT sockets (server side, remote destinations)."""
    connected_by_dest: dict[Endpoint, int] = field(default_factory=dict)
    """With ``Connected.COUNTS``: connected TCP sockets per destination listener of this namespace
    (client side, holding an ephemeral port each); empty otherwise."""
    connected_other: int = 0
    """With ``Connected.COUNTS``: the other connected TCP sockets (server side, remote peers)."""
    connected_ports: frozenset[int] = frozenset()
    """With ``Connected.COUNTS``: distinct local ports of the connected TCP sockets."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedNetns:
    """A namespace an all-namespaces read could not enter."""

    target: NetnsTarget
    """The namespace."""
    reason: str
    """Why (the NetnsError message)."""

    def gap(self) -> Gap:
        """The gap a snapshot carries for it."""
        spec = None if self.target.label == "host" else self.target.path
        return Gap(what=f"netns {spec}", reason=self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Collection:
    """Everything one run read."""

    readings: tuple[Reading, ...]
    """One per namespace, in the order asked (all namespaces: this one, named ones, the others)."""
    skipped: tuple[SkippedNetns, ...] = ()
    """Namespaces that could not be entered (all-namespaces reads only)."""
    owner_scan: OwnerScan | None = None
    """The fd scan used (None without owners): pass it to a later read to reuse it."""

    @property
    def snapshots(self) -> list[Snapshot]:
        """The snapshots, in order."""
        return [r.snapshot for r in self.readings]


def split_time_wait(
    raw: Counter[tuple[int, int, bytes]], sockets: Sequence[SocketRecord]
) -> tuple[dict[Endpoint, int], int]:
    """Raw per-destination counts (TIME_WAIT or connected sockets) -> per-destination counts toward
    TCP listener ports (ephemeral ports held by local clients) and the number of the others (server
    side, remote destinations)."""
    ports = {s.local.port for s in sockets if s.state is TcpState.LISTEN}
    counts: Counter[Endpoint] = Counter()
    other = 0
    for (family, dport, dst), n in raw.items():
        if dport in ports:
            addr = (
                ipaddress.IPv4Address(dst[:4])
                if family == socket.AF_INET
                else ipaddress.IPv6Address(dst)
            )
            counts[Endpoint(addr, dport)] += n
        else:
            other += n
    return dict(counts), other


def owner_gaps(
    scan: OwnerScan, vanished: int, unowned: int, *, as_root: bool | None = None
) -> list[Gap]:
    """The gaps of an owner scan: unreadable fd tables, processes that exited, unowned sockets.

    Args:
        scan: the /proc fd scan.
        vanished: processes that exited before their details were read (besides the scan's own).
        unowned: sockets no readable process holds.
        as_root: whether this process runs as root (default: ``os.geteuid() == 0``); root is told
            what can refuse it (its capabilities may have been dropped) instead of to run as root.
    """
    gaps: list[Gap] = []
    denied = scan.denied_pids
    if denied:
        if as_root is None:
            as_root = os.geteuid() == 0
        gaps.append(
            Gap(
                what=f"fd tables of {denied} {'process' if denied == 1 else 'processes'}",
                reason=(
                    "permission denied on /proc/PID/fd or /proc/PID/ns/net although running as root "
                    "(a process of another user namespace, one a security module protects, or "
                    "capabilities such as CAP_SYS_PTRACE dropped)"
                    if as_root
                    else "permission denied on /proc/PID/fd: run as root for the full view"
                ),
                count=denied,
            )
        )
    if vanished:
        gaps.append(
            Gap(
                what=f"{vanished} {'process' if vanished == 1 else 'processes'}",
                reason="exited during the scan",
                count=vanished,
            )
        )
    if unowned:
        gaps.append(
            Gap(
                what=f"owner of {unowned} {'socket' if unowned == 1 else 'sockets'}",
                reason="no readable process holds them (other users' processes need root, "
                "processes in another pid namespace, or closed mid-scan)",
                count=unowned,
            )
        )
    return gaps


def take_psutil(clock_ns: Callable[[], int]) -> Snapshot:
    """The whole snapshot from psutil (other systems: no queues, one namespace)."""
    from loopscope.backends.portable.psutil_backend import (
        CANNOT_SEE,
        read_psutil,
        read_psutil_interfaces,
    )

    started_ns = clock_ns()
    t0 = time.perf_counter_ns()
    netns = NetnsId(0, 0)
    sockets, processes, denied = read_psutil(netns)
    links, addresses = read_psutil_interfaces()
    gaps = list(CANNOT_SEE)
    if denied:
        gaps.append(Gap(what=f"{denied} processes", reason="not readable or exited", count=denied))
    return Snapshot(
        taken_at_ns=started_ns,
        netns=netns,
        netns_label="host",
        source="psutil",
        sockets=tuple(sockets),
        processes=processes,
        addresses=tuple(addresses),
        links=tuple(links),
        gaps=tuple(gaps),
        duration_ns=time.perf_counter_ns() - t0,
    )

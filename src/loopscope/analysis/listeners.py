"""Listeners: one row per listening TCP socket or bound unconnected UDP socket, with its scope (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from loopscope.analysis.scope import classify_address, host_address_set
from loopscope.model import (
    Endpoint,
    Family,
    NetnsId,
    ProcessInfo,
    Proto,
    Scope,
    Snapshot,
    SocketRecord,
)

__all__ = ["Listener", "find_listeners", "reach_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """A listening socket and who owns it."""

    proto: Proto
    """tcp or udp."""
    family: Family
    """inet or inet6."""
    local: Endpoint
    """Bind address and port."""
    scope: Scope
    """loopback, wildcard, host (one of this host's addresses) or other."""
    reach: str
    """Who can connect, in words: ``this host only``, ``all IPv4 addresses``, ``all IPv4 and IPv6``..."""
    v6only: bool | None
    """For [::] binds: False means it also accepts IPv4 (IPV6_V6ONLY off)."""
    accept_queue: int | None
    """TCP: connections waiting for accept() (idiag_rqueue)."""
    backlog: int | None
    """TCP: accept queue limit (idiag_wqueue)."""
    owners: tuple[ProcessInfo, ...]
    """Processes holding the socket (several for prefork servers); empty when unknown."""
    uid: int | None
    """Socket owner uid."""
    inode: int | None
    """Socket inode."""
    netns: NetnsId
    """Namespace."""
    netns_label: str
    """Namespace label."""
    socket: SocketRecord
    """The underlying record."""

    @property
    def process_names(self) -> tuple[str, ...]:
        """Distinct comm of the owners, in pid order."""
        seen: list[str] = []
        for p in self.owners:
            if p.comm not in seen:
                seen.append(p.comm)
        return tuple(seen)


def reach_of(sock: SocketRecord, scope: Scope) -> str:
    """Who can reach a listener, in words.

    ``[::]`` with IPV6_V6ONLY off accepts IPv4 too (net.ipv6.bindv6only=0 is the default), so it is
    ``all IPv4 and IPv6``; with it on, ``all IPv6 addresses`` only.
    """
    if scope is Scope.LOOPBACK:
        return "this host only"
    if scope is Scope.OWN_ADDRESS:
        return f"hosts on {sock.local.address}'s network"
    if scope is Scope.WILDCARD:
        if sock.family is Family.INET:
            return "all IPv4 addresses"
        if sock.v6only is False:
            return "all IPv4 and IPv6"
        if sock.v6only is True:
            return "all IPv6 addresses"
        return "all IPv6 (IPv4 unknown)"
    return "not an address of this host"


def find_listeners(snapshot: Snapshot) -> list[Listener]:
    """Every listener of a snapshot, sorted by (port, proto, family, address).

    TCP: state LISTEN. UDP: unconnected sockets bound to a non-zero port.
    """
    hosts = host_address_set(snapshot.addresses)
    out: list[Listener] = []
    for sock in snapshot.sockets:
        if not sock.is_listener:
            continue
        scope = classify_address(sock.local.address, hosts)
        out.append(
            Listener(
                proto=sock.proto,
                family=sock.family,
                local=sock.local,
                scope=scope,
                reach=reach_of(sock, scope),
                v6only=sock.v6only,
                accept_queue=sock.accept_queue,
                backlog=sock.backlog,
                owners=tuple(snapshot.processes[k] for k in sock.owners if k in snapshot.processes),
                uid=sock.uid,
                inode=sock.inode,
                netns=snapshot.netns,
                netns_label=snapshot.netns_label,
                socket=sock,
            )
        )
    out.sort(
        key=lambda item: (
            item.local.port,
            item.proto.value,
            item.family.value,
            int(item.local.address),
        )
    )
    return out

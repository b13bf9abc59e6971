"""Stack summary of one namespace: lo, loopback addresses, IPv6 state, ephemeral ports, TIME_WAIT (pure).

The facts are kept separate from their judgement so ``doctor`` can reuse them.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from loopscope.analysis.scope import classify_address, host_address_set
from loopscope.model import Endpoint, Finding, Proto, Scope, Severity, Snapshot, TcpState

__all__ = ["StackSummary", "check_stack", "summarize_stack"]

_V4_LOOP = ipaddress.IPv4Network("127.0.0.0/8")
_LOCAL_SCOPES = (Scope.LOOPBACK, Scope.OWN_ADDRESS)


@dataclass(frozen=True, slots=True, kw_only=True)
class StackSummary:
    """Loopback facts of one namespace."""

    lo_present: bool
    """An interface named ``lo`` (or with IFF_LOOPBACK) exists."""
    lo_up: bool
    """It is administratively up."""
    lo_mtu: int | None
    """Its MTU, bytes."""
    has_127_8: bool
    """127.0.0.1/8 is assigned to lo."""
    has_v6_loopback: bool
    """::1 is assigned to lo."""
    ipv6_disabled_by: str | None
    """The sysctl that disables IPv6 (``net.ipv6.conf.all.disable_ipv6``), None if enabled."""
    sockets: int
    """TCP + UDP sockets in the namespace."""
    listeners: int
    """Listening sockets (TCP LISTEN + bound UDP)."""
    loopback_connections: int
    """Loopback TCP sockets that are connected (each end counts once)."""
    time_wait: int
    """TCP sockets in TIME_WAIT."""
    time_wait_loopback: int
    """Of those, loopback ones."""
    ephemeral_range: tuple[int, int] | None
    """net.ipv4.ip_local_port_range."""
    ephemeral_range_size: int | None
    """Ports in the range."""
    ephemeral_in_use: int
    """Distinct local TCP ports in the ephemeral range held by connected sockets (TIME_WAIT included)."""
    ephemeral_by_destination: dict[str, int] = field(default_factory=dict)
    """Ephemeral ports in use toward each loopback destination ``addr:port`` (top 10)."""
    somaxconn: int | None = None
    """net.core.somaxconn."""
    tcp_tw_reuse: int | None = None
    """net.ipv4.tcp_tw_reuse."""
    source: str = ""
    """Which socket source answered."""


def summarize_stack(snapshot: Snapshot) -> StackSummary:
    """Summarise a snapshot's loopback stack."""
    lo = next((link for link in snapshot.links if link.loopback or link.name == "lo"), None)
    lo_addrs = [a.address for a in snapshot.addresses if lo is not None and a.index == lo.index]
    stack = snapshot.stack
    disabled_by = None
    if stack.ipv6_disabled_all:
        disabled_by = "net.ipv6.conf.all.disable_ipv6"
    elif stack.ipv6_disabled_lo:
        disabled_by = "net.ipv6.conf.lo.disable_ipv6"
    hosts = host_address_set(snapshot.addresses)
    low, high = stack.ip_local_port_range or (32768, 60999)
    in_use: set[int] = set()
    # Keyed by id(): one classification per distinct address object and one count per distinct
    # remote endpoint object (the parser shares them), so the 100k-socket loop hashes ints, not
    # ipaddress objects (a Python-level __hash__); folded by value below. Consecutive sockets mostly
    # share their address and destination objects: the last ones are tried first.
    local_ok: dict[int, bool] = {}
    last_address: object = None
    last_ok = False
    by_dest_id: dict[int, int] = {}
    dest_of: dict[int, Endpoint] = {}
    run_dest: Endpoint | None = None  # a run of sockets toward one destination object
    run = 0
    time_wait = tw_loop = loop_conns = listeners = 0
    tcp, udp = Proto.TCP, Proto.UDP
    tw_state, listen, unconn = TcpState.TIME_WAIT, TcpState.LISTEN, TcpState.UNCONN
    for sock in snapshot.sockets:
        state, proto, remote = sock.state, sock.proto, sock.remote
        if state is listen or (proto is udp and state is unconn and sock.local.port != 0):
            listeners += 1  # SocketRecord.is_listener, inline
            continue
        if proto is not tcp or not remote.port:
            continue
        local = sock.local
        la, ra = local.address, remote.address
        if la is last_address:
            lok = last_ok
        else:
            cached = local_ok.get(id(la))
            if cached is None:
                cached = local_ok[id(la)] = classify_address(la, hosts) in _LOCAL_SCOPES
            lok = last_ok = cached
            last_address = la
        if ra is last_address:
            rok = last_ok
        else:
            cached = local_ok.get(id(ra))
            if cached is None:
                cached = local_ok[id(ra)] = classify_address(ra, hosts) in _LOCAL_SCOPES
            rok = last_ok = cached
            last_address = ra
        loop = lok and rok
        if state is tw_state:
            time_wait += 1
            tw_loop += loop
        elif loop:
            loop_conns += 1
        port = local.port
        if low <= port <= high:
            in_use.add(port)
            if loop:
                if remote is run_dest:
                    run += 1
                else:
                    if run_dest is not None:
                        _add_run(by_dest_id, dest_of, run_dest, run)
                    run_dest, run = remote, 1
    if run_dest is not None:
        _add_run(by_dest_id, dest_of, run_dest, run)
    by_dest: Counter[Endpoint] = Counter()
    for ep_id, n in by_dest_id.items():  # first occurrences in socket order, as a walk would give
        by_dest[dest_of[ep_id]] += n
    return StackSummary(
        lo_present=lo is not None,
        lo_up=bool(lo and lo.up),
        lo_mtu=lo.mtu if lo else None,
        has_127_8=any(isinstance(a, ipaddress.IPv4Address) and a in _V4_LOOP for a in lo_addrs),
        has_v6_loopback=ipaddress.IPv6Address("::1") in lo_addrs,
        ipv6_disabled_by=disabled_by,
        sockets=len(snapshot.sockets),
        listeners=listeners,
        loopback_connections=loop_conns,
        time_wait=time_wait,
        time_wait_loopback=tw_loop,
        ephemeral_range=stack.ip_local_port_range,
        ephemeral_range_size=(high - low + 1) if stack.ip_local_port_range else None,
        ephemeral_in_use=len(in_use),
        ephemeral_by_destination={str(ep): n for ep, n in by_dest.most_common(10)},
        somaxconn=stack.somaxconn,
        tcp_tw_reuse=stack.tcp_tw_reuse,
        source=snapshot.source,
    )


def _add_run(
    by_dest_id: dict[int, int], dest_of: dict[int, Endpoint], dest: Endpoint, n: int
) -> None:
    """Add ``n`` sockets toward ``dest`` to the counts by endpoint object (first seen first)."""
    key = id(dest)
    if key in by_dest_id:
        by_dest_id[key] += n
    else:
        by_dest_id[key] = n
        dest_of[key] = dest


def check_stack(summary: StackSummary, *, netns_label: str = "host") -> list[Finding]:
    """Findings from the summary: lo missing/down, loopback addresses missing, ephemeral port pressure.

    Ephemeral pressure: any destination using >= 50% of the range (connect() to it will soon fail with
    EADDRNOTAVAIL) is high; >= 20% medium.
    """
    out: list[Finding] = []
    where = f"netns {netns_label}"
    if not summary.lo_present:
        out.append(
            Finding(
                code="LO_MISSING",
                severity=Severity.CRITICAL,
                subject=where,
                evidence="no loopback interface",
                remedy="create it: ip link add lo type loopback",
            )
        )
    elif not summary.lo_up:
        fix = (
            "ip link set lo up" if netns_label == "host" else f"ip -n {netns_label} link set lo up"
        )
        out.append(
            Finding(
                code="LO_DOWN",
                severity=Severity.CRITICAL,
                subject=where,
                evidence="lo is administratively DOWN: 127.0.0.1 and ::1 are unreachable",
                remedy=fix,
            )
        )
    elif not summary.has_127_8:
        out.append(
            Finding(
                code="LO_NO_IPV4",
                severity=Severity.HIGH,
                subject=where,
                evidence="127.0.0.1/8 is not assigned to lo",
                remedy="ip addr add 127.0.0.1/8 dev lo",
            )
        )
    if summary.lo_up and not summary.has_v6_loopback and summary.ipv6_disabled_by is None:
        out.append(
            Finding(
                code="LO_NO_IPV6",
                severity=Severity.MEDIUM,
                subject=where,
                evidence="IPv6 is enabled but ::1 is not assigned to lo",
                remedy="ip -6 addr add ::1/128 dev lo",
            )
        )
    size = summary.ephemeral_range_size
    if size:
        for dest, count in summary.ephemeral_by_destination.items():
            share = count / size
            if share >= 0.2:
                out.append(
                    Finding(
                        code="EPHEMERAL_PORT_PRESSURE",
                        severity=Severity.HIGH if share >= 0.5 else Severity.MEDIUM,
                        subject=f"{where} -> {dest}",
                        evidence=f"{count} of {size} ephemeral ports ({share:.0%}) in use toward {dest}",
                        remedy="reuse connections (keep-alive pools) instead of a new connection per call; "
                        "widen net.ipv4.ip_local_port_range; spread over more 127/8 addresses",
                    )
                )
    return out

"""Inputs and outputs of the watch analysis, and the reduction of a snapshot to what watch keeps (pure).

A watch window holds thousands of events and a snapshot per second; full snapshots are large (every
TIME_WAIT row), so each one is reduced at once by :func:`sample_snapshot` to a :class:`SnapshotSample`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loopscope.analysis.scope import host_address_set, is_loopback_connection, unmap
from loopscope.analysis.talkmap import build_talk_map
from loopscope.model import Endpoint, Finding, Gap, IPAddress, ProcessInfo, Snapshot, TcpState
from loopscope.model.events import CloseEvent, ConnectEvent, HttpEvent, SourceStatus

__all__ = ["ListenerSample", "PooledConnection", "SnapshotSample", "WatchData", "sample_snapshot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerSample:
    """One TCP listener at one snapshot."""

    local: Endpoint
    """Bind address and port."""
    accept_queue: int | None
    """Connections waiting for accept()."""
    backlog: int | None
    """Accept queue limit."""
    owners: tuple[ProcessInfo, ...]
    """Processes holding the listener (the app)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PooledConnection:
    """An established loopback connection seen in a snapshot (long-lived: keep-alive, pools)."""

    client: Endpoint
    """Client end (unmapped addresses)."""
    server: Endpoint
    """Server end."""
    client_cookie: int | None
    """Cookie of the client socket (joins eBPF and destroy events)."""
    server_cookie: int | None
    """Cookie of the server's accepted socket."""
    client_owners: tuple[ProcessInfo, ...]
    """Processes holding the client socket."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotSample:
    """What watch keeps of one snapshot."""

    at_ns: int
    """Snapshot time, CLOCK_REALTIME ns."""
    listeners: tuple[ListenerSample, ...]
    """TCP listeners."""
    established: tuple[PooledConnection, ...]
    """Established loopback TCP connections with both ends seen."""
    time_wait: int | None
    """TCP sockets in TIME_WAIT (all addresses); None for a listener-only sample."""
    ephemeral_in_use: dict[str, int]
    """Client ports in use toward each loopback listener, ``"127.0.0.1:8080/tcp" -> count``."""
    ephemeral_range: tuple[int, int] | None
    """net.ipv4.ip_local_port_range."""
    host_addresses: frozenset[IPAddress]
    """Addresses configured in the namespace (traffic to them goes through lo)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchData:
    """Everything one watch window collected, for :func:`loopscope.analysis.watch.report.summarize_watch`."""

    started_ns: int
    """Window start, CLOCK_REALTIME ns."""
    ended_ns: int
    """Window end, CLOCK_REALTIME ns."""
    netns_label: str = "host"
    """Namespace watched (destroy events and snapshots; eBPF sees every namespace)."""
    connects: tuple[ConnectEvent, ...] = ()
    """eBPF sockops events."""
    closes: tuple[CloseEvent, ...] = ()
    """sock_diag destroy events."""
    http: tuple[HttpEvent, ...] = ()
    """HTTP/1.x request and status lines."""
    samples: tuple[SnapshotSample, ...] = ()
    """Reduced snapshots, in time order."""
    processes: dict[int, ProcessInfo] = field(default_factory=dict)
    """Details of client pids reported by eBPF, by pid (read from /proc while they lived)."""
    sources: tuple[SourceStatus, ...] = ()
    """Which sources answered."""
    gaps: tuple[Gap, ...] = ()
    """What could not be seen."""
    findings: tuple[Finding, ...] = ()
    """Findings the collector itself raised (none today; reserved)."""


def sample_snapshot(
    snapshot: Snapshot,
    time_wait_by_dest: dict[Endpoint, int] | None = None,
    *,
    time_wait_other: int = 0,
    listeners_only: bool = False,
) -> SnapshotSample:
    """Reduce a snapshot to listeners, established loopback pairs, TIME_WAIT and ephemeral counts.

    Args:
        snapshot: a full snapshot, or a light one (listeners and established sockets only).
        time_wait_by_dest: with a light snapshot, TIME_WAIT counts per remote endpoint; they add to the
            TIME_WAIT total and to the ephemeral ports in use toward local listeners.
        time_wait_other: with a light snapshot, the TIME_WAIT sockets not toward a listener (counted
            in the total only).
        listeners_only: the snapshot holds listeners only (TIME_WAIT then is None).

    Example: a snapshot with a listener on 127.0.0.1:8080 (accept queue 3 of 128) and 2 TIME_WAIT rows ->
    ``SnapshotSample(listeners=(ListenerSample(local=127.0.0.1:8080, accept_queue=3, backlog=128, ...),),
    time_wait=2, ...)``.
    """
    procs = snapshot.processes
    listeners = tuple(
        ListenerSample(
            local=s.local,
            accept_queue=s.accept_queue,
            backlog=s.backlog,
            owners=tuple(procs[k] for k in s.owners if k in procs),
        )
        for s in snapshot.sockets
        if s.state is TcpState.LISTEN
    )
    hosts = host_address_set(snapshot.addresses)
    talk = build_talk_map(snapshot)
    established = []
    for conn in talk.connections:
        if (
            conn.state is not TcpState.ESTABLISHED
            or conn.client_socket is None
            or conn.server_socket is None
        ):
            continue
        if not is_loopback_connection(conn.client_socket, hosts):
            continue
        established.append(
            PooledConnection(
                client=Endpoint(unmap(conn.client.address), conn.client.port),
                server=Endpoint(unmap(conn.server.address), conn.server.port),
                client_cookie=conn.client_socket.cookie,
                server_cookie=conn.server_socket.cookie,
                client_owners=tuple(procs[k] for k in conn.client_socket.owners if k in procs),
            )
        )
    time_wait = sum(1 for s in snapshot.sockets if s.state is TcpState.TIME_WAIT)
    ephemeral = dict(talk.ephemeral_in_use)
    time_wait += time_wait_other
    if time_wait_by_dest:
        time_wait += sum(time_wait_by_dest.values())
        local = {Endpoint(unmap(lst.local.address), lst.local.port) for lst in listeners}
        wild_ports = {lst.local.port for lst in listeners if int(lst.local.address) == 0}
        for dest, n in time_wait_by_dest.items():
            plain = Endpoint(unmap(dest.address), dest.port)
            is_local = plain.address.is_loopback or plain.address in hosts
            if plain in local or (dest.port in wild_ports and is_local):
                key = f"{plain}/tcp"
                ephemeral[key] = ephemeral.get(key, 0) + n
    return SnapshotSample(
        at_ns=snapshot.taken_at_ns,
        listeners=listeners,
        established=tuple(established),
        time_wait=None if listeners_only else time_wait,
        ephemeral_in_use=ephemeral,
        ephemeral_range=snapshot.stack.ip_local_port_range,
        host_addresses=hosts,
    )

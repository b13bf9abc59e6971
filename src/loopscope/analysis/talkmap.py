"""The loopback talk map: who talks to whom over loopback, and which apps call themselves (pure).

Both ends of a loopback connection are in the same socket table, so the client socket
(local 127.0.0.1:54321 -> remote 127.0.0.1:8080) and the server socket (local :8080 -> remote :54321)
pair up by 4-tuple. The server side is the end whose local endpoint matches a listener.

Apps are defined once, in :mod:`loopscope.analysis.apps`: the set of processes that own a listener
(prefork workers inherit it, so they are owners too). A client is shown as the app it belongs to (one of
the owners, in a process group led by one, or in the owners' systemd service cgroup), otherwise by its
name (``curl (3 processes)``: every process of that comm in the namespace, pids in ``client_pids``). An edge is a **self-call** when the client app is the server app.

The talk map is a snapshot (connections open right now, :class:`TalkEdge`); ``watch`` aggregates over a
window (:class:`loopscope.analysis.watch.report.WatchEdge`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from loopscope.analysis.apps import (
    UNKNOWN_APP,
    App,
    AppKey,
    app_label,
    client_app,
    find_apps,
    process_app,
)
from loopscope.analysis.scope import host_address_set, is_loopback_connection, is_wildcard, unmap
from loopscope.model import (
    Endpoint,
    ProcessInfo,
    ProcessKey,
    Proto,
    Snapshot,
    SocketRecord,
    TcpState,
)

__all__ = [
    "LoopbackConnection",
    "TalkEdge",
    "TalkMap",
    "build_talk_map",
    "pair_connections",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopbackConnection:
    """One loopback connection with its two ends (either may be missing: TIME_WAIT keeps one)."""

    proto: Proto
    """tcp or udp."""
    client: Endpoint
    """Client endpoint (ephemeral port)."""
    server: Endpoint
    """Server endpoint (the listener's port)."""
    client_socket: SocketRecord | None
    """The client's socket, if seen."""
    server_socket: SocketRecord | None
    """The server's accepted socket, if seen."""
    listener: SocketRecord | None
    """The listener the server port belongs to, if any."""
    state: TcpState
    """State of the client end (or the server end when the client end is gone)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkEdge:
    """Client app -> server app:port over the connections open in one snapshot, aggregated."""

    client_app: AppKey
    """Client app identity (the edge's key with ``server_app``, ``port`` and ``proto``)."""
    server_app: AppKey
    """Server app identity."""
    client: str
    """Client label: ``comm[pid,...]`` or ``?`` when unknown (TIME_WAIT, other users without root)."""
    server: str
    """Server label: the listener owners ``comm[pid,...]`` or ``?``."""
    port: int
    """Server port; 0 for connections to ports nobody listens on any more (closed, TIME_WAIT)."""
    proto: Proto
    """tcp or udp."""
    connections: int
    """Connections on this edge right now."""
    states: dict[str, int]
    """Connections by state (client end)."""
    self_call: bool
    """The client is the server app itself (see module docstring)."""
    client_pids: tuple[int, ...]
    """Client pids seen."""
    server_pids: tuple[int, ...]
    """Listener owner pids."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkMap:
    """The loopback talk map of one namespace."""

    connections: tuple[LoopbackConnection, ...] = ()
    """Every loopback connection."""
    edges: tuple[TalkEdge, ...] = ()
    """Aggregated edges, busiest first."""
    self_call_connections: int = 0
    """Connections on self-call edges."""
    unpaired: int = 0
    """Connections with one end only (peer closed: TIME_WAIT / FIN states)."""
    ephemeral_in_use: dict[str, int] = field(default_factory=dict)
    """Client-side ports in use toward each loopback listener, ``"127.0.0.1:8080/tcp" -> count``."""


def _listener_index(snapshot: Snapshot) -> dict[tuple[Proto, int], list[SocketRecord]]:
    index: dict[tuple[Proto, int], list[SocketRecord]] = {}
    for sock in snapshot.sockets:
        if sock.state is TcpState.LISTEN or (sock.proto is Proto.UDP and sock.is_listener):
            index.setdefault((sock.proto, sock.local.port), []).append(sock)
    return index


def _match_listener(ep: Endpoint, candidates: list[SocketRecord]) -> SocketRecord | None:
    best: SocketRecord | None = None
    for sock in candidates:
        if unmap(sock.local.address) == unmap(ep.address):
            return sock
        if is_wildcard(sock.local.address):
            if sock.family.value == "inet" and unmap(ep.address).version == 6:
                continue
            best = best or sock
    return best


def pair_connections(snapshot: Snapshot) -> tuple[list[LoopbackConnection], int]:
    """Pair the two ends of every loopback connection.

    Returns:
        (connections, number with one end only).
    """
    hosts = host_address_set(snapshot.addresses)
    listeners = _listener_index(snapshot)
    ends: dict[tuple[Proto, Endpoint, Endpoint], SocketRecord] = {}
    for sock in snapshot.sockets:
        if sock.is_listener or sock.state is TcpState.LISTEN:
            continue
        if is_loopback_connection(sock, hosts):
            key = (
                sock.proto,
                Endpoint(unmap(sock.local.address), sock.local.port),
                Endpoint(unmap(sock.remote.address), sock.remote.port),
            )
            ends[key] = sock
    done: set[tuple[Proto, Endpoint, Endpoint]] = set()
    out: list[LoopbackConnection] = []
    unpaired = 0
    for key, sock in ends.items():
        if key in done:
            continue
        proto, local, remote = key
        peer_key = (proto, remote, local)
        peer = ends.get(peer_key)
        done.add(key)
        done.add(peer_key)
        local_listener = _match_listener(local, listeners.get((proto, local.port), []))
        remote_listener = _match_listener(remote, listeners.get((proto, remote.port), []))
        client_sock: SocketRecord | None
        server_sock: SocketRecord | None
        if remote_listener is not None and (local_listener is None or local.port > remote.port):
            client_sock, server_sock, listener = sock, peer, remote_listener
            client_ep, server_ep = local, remote
        elif local_listener is not None:
            client_sock, server_sock, listener = peer, sock, local_listener
            client_ep, server_ep = remote, local
        else:  # no listener (closed since): the higher port is the ephemeral, client side
            if local.port >= remote.port:
                client_sock, server_sock, client_ep, server_ep = sock, peer, local, remote
            else:
                client_sock, server_sock, client_ep, server_ep = peer, sock, remote, local
            listener = None
        if peer is None:
            unpaired += 1
        state = (client_sock or server_sock or sock).state
        out.append(
            LoopbackConnection(
                proto=proto,
                client=client_ep,
                server=server_ep,
                client_socket=client_sock,
                server_socket=server_sock,
                listener=listener,
                state=state,
            )
        )
    out.sort(key=lambda c: (c.server.port, c.client.port))
    return out, unpaired


@dataclass(slots=True)
class _EdgeAcc:
    client: App
    server: App
    connections: int = 0
    states: Counter[str] = field(default_factory=Counter)
    client_pids: set[int] = field(default_factory=set)
    server_pids: set[int] = field(default_factory=set)


def _is_listener(sock: SocketRecord) -> bool:
    return sock.state is TcpState.LISTEN or (sock.proto is Proto.UDP and sock.is_listener)


def build_talk_map(snapshot: Snapshot) -> TalkMap:
    """Connections, edges and self-calls of one namespace."""
    connections, unpaired = pair_connections(snapshot)
    procs = snapshot.processes

    def owners_of(sock: SocketRecord | None) -> list[ProcessInfo]:
        if sock is None:
            return []
        return [procs[k] for k in sock.owners if k in procs]

    apps = find_apps(
        ((owners_of(s), s.local.port) for s in snapshot.sockets if _is_listener(s)),
        netns=snapshot.netns,
    )
    by_owner = {k: a for a in apps for k in a.key.processes}
    unowned = {a.key: a for a in apps if not a.processes}
    groups: dict[tuple[AppKey, AppKey, int, Proto], _EdgeAcc] = {}
    ephemeral: Counter[str] = Counter()
    self_calls = 0
    for conn in connections:
        # The listener's owners include every worker; the accepting process is one of them.
        server_owners = owners_of(conn.listener) or owners_of(conn.server_socket)
        client_owners = owners_of(conn.client_socket)
        server = _server_app(conn, server_owners, by_owner, unowned, snapshot)
        client = client_app(client_owners, apps, server=server, netns=snapshot.netns)
        is_self = bool(client_owners) and bool(server_owners) and client.key == server.key
        self_calls += is_self
        # Connections to a port nobody listens on any more (TIME_WAIT leftovers) fold into port 0.
        port = conn.server.port if conn.listener is not None or server_owners else 0
        acc = groups.setdefault(
            (client.key, server.key, port, conn.proto), _EdgeAcc(client=client, server=server)
        )
        acc.connections += 1
        acc.states[conn.state.value] += 1
        acc.client_pids.update(p.pid for p in client_owners)
        acc.server_pids.update(p.pid for p in server_owners)
        if conn.listener is not None:
            ephemeral[f"{conn.server}/{conn.proto}"] += 1
    edges = [
        TalkEdge(
            client_app=k[0],
            server_app=k[1],
            client=app_label(k[0], acc.client.processes, pids=acc.client_pids),
            server=acc.server.label,
            port=k[2],
            proto=k[3],
            connections=acc.connections,
            states=dict(acc.states),
            self_call=bool(acc.client.processes) and k[0] == k[1],
            client_pids=tuple(sorted(acc.client_pids)),
            server_pids=tuple(sorted(acc.server_pids)),
        )
        for k, acc in groups.items()
    ]
    edges.sort(key=lambda e: (-e.connections, e.port, e.client))
    return TalkMap(
        connections=tuple(connections),
        edges=tuple(edges),
        self_call_connections=self_calls,
        unpaired=unpaired,
        ephemeral_in_use=dict(ephemeral),
    )


def _server_app(
    conn: LoopbackConnection,
    owners: list[ProcessInfo],
    by_owner: dict[ProcessKey, App],
    unowned: dict[AppKey, App],
    snapshot: Snapshot,
) -> App:
    """The listener's app; the accepting process's own app when the listener is gone; unknown else."""
    for owner in owners:
        if owner.key in by_owner:
            return by_owner[owner.key]
    if owners:
        return process_app(owners, netns=snapshot.netns)
    if conn.listener is not None:
        key = AppKey(netns=snapshot.netns, ports=(conn.listener.local.port,))
        return unowned.get(key) or App(key=key)
    return App(key=UNKNOWN_APP)


def owners_keys(sock: SocketRecord | None) -> tuple[ProcessKey, ...]:
    """Owners of a socket, empty for None."""
    return sock.owners if sock is not None else ()

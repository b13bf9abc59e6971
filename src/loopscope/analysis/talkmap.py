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

import dataclasses
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loopscope.analysis.apps import (
    UNKNOWN_APP,
    App,
    AppKey,
    app_label,
    client_app,
    find_apps,
    process_app,
)
from loopscope.analysis.scope import (
    address_key,
    classify_address,
    host_address_set,
    is_wildcard,
    unmap,
)
from loopscope.model import (
    Endpoint,
    IPAddress,
    ProcessInfo,
    ProcessKey,
    Proto,
    Scope,
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

    Pairing runs on raw keys, not ``ipaddress`` objects: each distinct address object of the
    snapshot is classified once and turned into an int (:func:`~loopscope.analysis.scope.address_key`),
    each end is the int ``address key << 16 | port`` and each socket the pair
    ``(local end, remote end)`` in a dict per protocol, so the 100k-socket hot path hashes ints
    (``ipaddress`` hashes in Python). Listener matches are computed once per distinct end. Output is
    the same as keying by unmapped :class:`~loopscope.model.Endpoint` values.

    Returns:
        (connections sorted by server port then client port, number with one end only).
    """
    hosts = host_address_set(snapshot.addresses)
    listeners = _listener_index(snapshot)
    # id(address) -> address key, or None when the address is neither loopback nor the host's own.
    # Ids are stable during the call: the snapshot keeps every address object alive.
    info: dict[int, int | None] = {}
    plain_of: dict[int, IPAddress] = {}  # address key -> unmapped address
    mapped: set[int] = set()  # ids of IPv4-mapped address objects (rare)
    by_proto: dict[Proto, dict[tuple[int, int], SocketRecord]] = {}
    listen, unconn, udp = TcpState.LISTEN, TcpState.UNCONN, Proto.UDP
    for sock in snapshot.sockets:
        state = sock.state
        local, remote = sock.local, sock.remote
        if state is listen or remote.port == 0:
            continue
        proto = sock.proto
        if proto is udp and state is unconn and local.port != 0:
            continue  # an unconnected UDP socket bound to a port: a listener
        la, ra = local.address, remote.address
        lk = info.get(id(la), _MISSING)
        if lk is _MISSING:
            lk = info[id(la)] = _local_key(la, hosts, plain_of, mapped)
        if lk is None:
            continue
        rk = info.get(id(ra), _MISSING)
        if rk is _MISSING:
            rk = info[id(ra)] = _local_key(ra, hosts, plain_of, mapped)
        if rk is None:
            continue
        ends = by_proto.get(proto)
        if ends is None:
            ends = by_proto[proto] = {}
        ends[(lk << 16 | local.port, rk << 16 | remote.port)] = sock
    rows: list[tuple[int, int, LoopbackConnection]] = []
    unpaired = 0
    for proto, ends in by_proto.items():
        done: set[tuple[int, int]] = set()
        matched: dict[int, SocketRecord | None] = {}  # end key -> its listener
        for key, sock in ends.items():
            if key in done:
                continue
            le, re_ = key
            peer_key = (re_, le)
            peer = ends.get(peer_key)
            if peer is None:
                unpaired += 1
            else:
                done.add(peer_key)
            local_listener = matched.get(le, _MISSING)
            if local_listener is _MISSING:
                local_listener = matched[le] = _match_end(proto, le, plain_of, listeners)
            remote_listener = matched.get(re_, _MISSING)
            if remote_listener is _MISSING:
                remote_listener = matched[re_] = _match_end(proto, re_, plain_of, listeners)
            lp, rp = le & 0xFFFF, re_ & 0xFFFF
            client_sock: SocketRecord | None
            server_sock: SocketRecord | None
            if remote_listener is not None and (local_listener is None or lp > rp):
                client_sock, server_sock, listener = sock, peer, remote_listener
                client_local = True
            elif local_listener is not None:
                client_sock, server_sock, listener = peer, sock, local_listener
                client_local = False
            else:  # no listener (closed since): the higher port is the ephemeral, client side
                client_local = lp >= rp
                client_sock, server_sock = (sock, peer) if client_local else (peer, sock)
                listener = None
            # The unmapped ends: the socket's own Endpoints unless an address is IPv4-mapped.
            local_ep, remote_ep = sock.local, sock.remote
            if mapped:
                if id(local_ep.address) in mapped:
                    local_ep = Endpoint(plain_of[le >> 16], lp)
                if id(remote_ep.address) in mapped:
                    remote_ep = Endpoint(plain_of[re_ >> 16], rp)
            if client_local:
                client_ep, server_ep = local_ep, remote_ep
            else:
                client_ep, server_ep = remote_ep, local_ep
            state = (client_sock or server_sock or sock).state
            rows.append(
                (
                    server_ep.port,
                    client_ep.port,
                    _new_connection(
                        proto, client_ep, server_ep, client_sock, server_sock, listener, state
                    ),
                )
            )
    rows.sort(key=_ROW_ORDER)
    return [row[2] for row in rows], unpaired


_MISSING: Any = object()
_ROW_ORDER = operator.itemgetter(0, 1)


def _local_key(
    addr: IPAddress, hosts: frozenset[IPAddress], plain_of: dict[int, IPAddress], mapped: set[int]
) -> int | None:
    """The address key of a loopback or host-owned address (recorded in ``plain_of``, and its id in
    ``mapped`` when it is IPv4-mapped), None for any other address."""
    if classify_address(addr, hosts) not in (Scope.LOOPBACK, Scope.OWN_ADDRESS):
        return None
    plain = unmap(addr)
    if plain is not addr:
        mapped.add(id(addr))
    key = address_key(plain)
    while key in plain_of and plain_of[key] != plain:
        key += 1 << 130  # fe80::1%eth0 vs fe80::1%eth1: equal ints, different addresses
    plain_of[key] = plain
    return key


def _match_end(
    proto: Proto,
    end: int,
    plain_of: dict[int, IPAddress],
    listeners: dict[tuple[Proto, int], list[SocketRecord]],
) -> SocketRecord | None:
    port = end & 0xFFFF
    return _match_listener(Endpoint(plain_of[end >> 16], port), listeners.get((proto, port), []))


_CONNECTION_FIELDS = (
    "proto",
    "client",
    "server",
    "client_socket",
    "server_socket",
    "listener",
    "state",
)
if tuple(f.name for f in dataclasses.fields(LoopbackConnection)) != _CONNECTION_FIELDS:
    raise TypeError("LoopbackConnection changed: update _new_connection")  # pragma: no cover
(
    _set_proto,
    _set_client,
    _set_server,
    _set_client_socket,
    _set_server_socket,
    _set_listener,
    _set_state,
) = (LoopbackConnection.__dict__[name].__set__ for name in _CONNECTION_FIELDS)


def _new_connection(
    proto: Proto,
    client: Endpoint,
    server: Endpoint,
    client_socket: SocketRecord | None,
    server_socket: SocketRecord | None,
    listener: SocketRecord | None,
    state: TcpState,
) -> LoopbackConnection:
    """``LoopbackConnection(...)`` without the frozen ``__init__`` (one ``object.__setattr__`` per
    field): setting the slots directly is 2-3x faster at 50k connections, and the record is the same."""
    conn = object.__new__(LoopbackConnection)
    _set_proto(conn, proto)
    _set_client(conn, client)
    _set_server(conn, server)
    _set_client_socket(conn, client_socket)
    _set_server_socket(conn, server_socket)
    _set_listener(conn, listener)
    _set_state(conn, state)
    return conn


@dataclass(slots=True)
class _EdgeAcc:
    client: App
    server: App
    connections: int = 0
    states: Counter[str] = field(default_factory=Counter)
    client_pids: set[int] = field(default_factory=set)
    server_pids: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Resolved:
    """The apps of the connections sharing one listener and the same owners at both ends."""

    server: App
    """Server app."""
    client: App
    """Client app."""
    is_self: bool
    """Both ends known and the same app."""
    has_server_owners: bool
    """The listener (or the accepted socket) has known owners."""
    server_pids: tuple[int, ...]
    """Pids of the server owners."""
    client_pids: tuple[int, ...]
    """Pids of the client owners."""


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
    ephemeral_raw: Counter[tuple[int, int, Proto]] = Counter()
    server_address = {id(c.server.address): c.server.address for c in connections}
    self_calls = 0
    # The apps of a connection depend only on its listener and the owners of its two ends: resolve
    # them once per distinct combination (50k connections share a handful), not per connection.
    resolved: dict[tuple[int, tuple[ProcessKey, ...], tuple[ProcessKey, ...]], _Resolved] = {}
    for conn in connections:
        rkey = (
            id(conn.listener),
            conn.server_socket.owners if conn.server_socket is not None else (),
            conn.client_socket.owners if conn.client_socket is not None else (),
        )
        hit = resolved.get(rkey)
        if hit is None:
            # The listener's owners include every worker; the accepting process is one of them.
            server_owners = owners_of(conn.listener) or owners_of(conn.server_socket)
            client_owners = owners_of(conn.client_socket)
            server = _server_app(conn, server_owners, by_owner, unowned, snapshot)
            client = client_app(client_owners, apps, server=server, netns=snapshot.netns)
            is_self = bool(client_owners) and bool(server_owners) and client.key == server.key
            hit = resolved[rkey] = _Resolved(
                server=server,
                client=client,
                is_self=is_self,
                has_server_owners=bool(server_owners),
                server_pids=tuple(p.pid for p in server_owners),
                client_pids=tuple(p.pid for p in client_owners),
            )
        server, client = hit.server, hit.client
        self_calls += hit.is_self
        # Connections to a port nobody listens on any more (TIME_WAIT leftovers) fold into port 0.
        port = conn.server.port if conn.listener is not None or hit.has_server_owners else 0
        gkey = (client.key, server.key, port, conn.proto)
        acc = groups.get(gkey)
        if acc is None:
            acc = groups[gkey] = _EdgeAcc(client=client, server=server)
        acc.connections += 1
        acc.states[conn.state.value] += 1
        acc.client_pids.update(hit.client_pids)
        acc.server_pids.update(hit.server_pids)
        if conn.listener is not None:  # counted by raw key here, labelled once below
            ephemeral_raw[id(conn.server.address), conn.server.port, conn.proto] += 1
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
        ephemeral_in_use=_ephemeral_labels(ephemeral_raw, server_address),
    )


def _ephemeral_labels(
    counts: Counter[tuple[int, int, Proto]], addresses: dict[int, IPAddress]
) -> dict[str, int]:
    """``{(id(address), port, proto): n}`` -> ``{"127.0.0.1:8080/tcp": n}`` (equal labels add up)."""
    out: Counter[str] = Counter()
    for (addr_id, port, proto), n in counts.items():
        out[f"{Endpoint(addresses[addr_id], port)}/{proto}"] += n
    return dict(out)


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

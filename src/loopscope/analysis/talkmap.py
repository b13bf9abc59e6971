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
import gc
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


def _listener_index(listeners: list[SocketRecord]) -> dict[tuple[Proto, int], list[SocketRecord]]:
    index: dict[tuple[Proto, int], list[SocketRecord]] = {}
    for sock in listeners:
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
    snapshot is classified once and given a small int (its index among the distinct loopback and
    host-owned addresses), each end is the int ``index << 16 | port`` and each socket the pair
    ``(local end, remote end)`` in a dict per protocol, so the 100k-socket hot path hashes ints
    (``ipaddress`` hashes in Python). Listener matches are computed once per distinct end, and only
    for ends whose port has a listener. Output is the same as keying by unmapped
    :class:`~loopscope.model.Endpoint` values.

    Returns:
        (connections sorted by server port then client port, number with one end only).
    """
    rows, unpaired, _, _ = _paired_rows(snapshot)
    return list(map(_CONNECTION, rows)), unpaired


_Row = tuple[int, LoopbackConnection]
"""``(server port << 16 | client port, connection)``."""
_Combo = tuple[int, tuple[ProcessKey, ...], tuple[ProcessKey, ...], int, int, int, int]
"""Everything the talk map reads of a connection: ``(id(listener), server socket owners, client
socket owners, id(state), server port, id(proto), id(server address))`` (ids stay valid while the
snapshot lives)."""


@dataclass(slots=True)
class _ComboCount:
    """The connections of one :data:`_Combo`."""

    connections: int
    """How many."""
    first_order: int
    """Sort key (server port << 16 | client port) of the first one in connection order."""
    first_seq: int
    """Its position before the sort (the sort is stable: ties keep this order)."""
    sample: LoopbackConnection
    """That connection: it stands for all of them."""


def _paired_rows(
    snapshot: Snapshot,
) -> tuple[list[_Row], int, list[SocketRecord], dict[_Combo, _ComboCount]]:
    """The work of :func:`pair_connections`, with what :func:`build_talk_map` needs on the side.

    Returns:
        (rows sorted by server port then client port, the number of connections with one end only,
        the listeners in snapshot order, the connections counted by combination).
    """
    hosts = host_address_set(snapshot.addresses)
    # id(address) -> address index, or None when the address is neither loopback nor the host's own.
    # Ids are stable during the call: the snapshot keeps every address object alive.
    info: dict[int, int | None] = {}
    index_of: dict[IPAddress, int] = {}  # unmapped address -> its index (scoped IPv6 stay apart)
    plain_of: list[IPAddress] = []  # address index -> unmapped address
    mapped: set[int] = set()  # ids of IPv4-mapped address objects (rare)
    # end key: address index << 16 | port (< 2**48: fewer than 2**32 distinct addresses); a socket's
    # key: its local end key << 48 | remote end key (one int: no tuple to build, hash or keep per
    # socket, which counts at 100k sockets)
    by_proto: dict[Proto, dict[int, SocketRecord]] = {}
    listeners: list[SocketRecord] = []
    listen, unconn, udp = TcpState.LISTEN, TcpState.UNCONN, Proto.UDP
    last_proto: Proto | None = None
    last_address: object = _MISSING
    last_index: int | None = None
    ends: dict[int, SocketRecord] = {}
    for sock in snapshot.sockets:
        state = sock.state
        local, remote = sock.local, sock.remote
        if state is listen:
            listeners.append(sock)
            continue
        proto = sock.proto
        if proto is udp and state is unconn and local.port != 0:
            listeners.append(sock)  # an unconnected UDP socket bound to a port: a listener
            continue
        if remote.port == 0:
            continue
        la, ra = local.address, remote.address
        # Most ends share one address object (the parser caches them): try the last one first.
        if la is last_address:
            lk = last_index
        else:
            lk = info.get(id(la), _MISSING)
            if lk is _MISSING:
                lk = info[id(la)] = _local_index(la, hosts, index_of, plain_of, mapped)
            last_address, last_index = la, lk
        if lk is None:
            continue
        if ra is last_address:
            rk = last_index
        else:
            rk = info.get(id(ra), _MISSING)
            if rk is _MISSING:
                rk = info[id(ra)] = _local_index(ra, hosts, index_of, plain_of, mapped)
            last_address, last_index = ra, rk
        if rk is None:
            continue
        if proto is not last_proto:  # sockets come grouped by protocol: hash the enum rarely
            ends = by_proto.setdefault(proto, {})
            last_proto = proto
        ends[(lk << 16 | local.port) << 48 | rk << 16 | remote.port] = sock
    index = _listener_index(listeners)
    rows: list[_Row] = []
    combos: dict[_Combo, _ComboCount] = {}
    unpaired = 0
    no_owners: tuple[ProcessKey, ...] = ()
    for proto, ends in by_proto.items():
        matched: dict[int, SocketRecord | None] = {}  # end key -> its listener
        ports = {port for p, port in index if p is proto}
        left = dict(ends)  # the ends not yet taken as a peer (in dict order: the first seen leads)
        pop = left.pop
        for key, sock in ends.items():
            if key not in left:
                continue  # the peer of an earlier socket
            le, re_ = key >> 48, key & _END_MASK
            peer = pop(re_ << 48 | le, None)  # a socket connected to itself is its own peer
            if peer is None:
                unpaired += 1
            lp, rp = le & 0xFFFF, re_ & 0xFFFF
            local_listener = remote_listener = None
            if lp in ports:
                local_listener = matched.get(le, _MISSING)
                if local_listener is _MISSING:
                    local_listener = matched[le] = _match_end(proto, le, plain_of, index)
            if rp in ports:
                remote_listener = matched.get(re_, _MISSING)
                if remote_listener is _MISSING:
                    remote_listener = matched[re_] = _match_end(proto, re_, plain_of, index)
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
            server_port = server_ep.port
            order = server_port << 16 | client_ep.port
            conn = _new_connection(
                proto, client_ep, server_ep, client_sock, server_sock, listener, state
            )
            combo = (
                id(listener),
                server_sock.owners if server_sock is not None else no_owners,
                client_sock.owners if client_sock is not None else no_owners,
                id(state),
                server_port,
                id(proto),
                id(server_ep.address),
            )
            count = combos.get(combo)
            if count is None:
                combos[combo] = _ComboCount(
                    connections=1, first_order=order, first_seq=len(rows), sample=conn
                )
            else:
                count.connections += 1
                if order < count.first_order:  # equal orders: the earlier one stays first
                    count.first_order, count.first_seq, count.sample = order, len(rows), conn
            rows.append((order, conn))
    rows.sort(key=_ROW_ORDER)  # one int per row: sorts ~5x faster than (server, client) tuples
    return rows, unpaired, listeners, combos


_MISSING: Any = object()
_END_MASK = (1 << 48) - 1
_ROW_ORDER = operator.itemgetter(0)
_CONNECTION = operator.itemgetter(1)


def _first_seen(item: tuple[_Combo, _ComboCount]) -> tuple[int, int]:
    return item[1].first_order, item[1].first_seq


def _local_index(
    addr: IPAddress,
    hosts: frozenset[IPAddress],
    index_of: dict[IPAddress, int],
    plain_of: list[IPAddress],
    mapped: set[int],
) -> int | None:
    """The index of a loopback or host-owned address among the distinct ones (its unmapped form
    recorded in ``plain_of``, its id in ``mapped`` when it is IPv4-mapped), None for any other
    address."""
    if classify_address(addr, hosts) not in (Scope.LOOPBACK, Scope.OWN_ADDRESS):
        return None
    plain = unmap(addr)
    if plain is not addr:
        mapped.add(id(addr))
    found = index_of.get(plain)
    if found is None:
        found = index_of[plain] = len(plain_of)
        plain_of.append(plain)
    return found


def _match_end(
    proto: Proto,
    end: int,
    plain_of: list[IPAddress],
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


def build_talk_map(snapshot: Snapshot) -> TalkMap:
    """Connections, edges and self-calls of one namespace.

    Cost is linear in sockets: the connections are counted by the combination of what the edges read
    of them (listener, owners of both ends, state, server address and port, protocol; 50k
    connections share a handful), and apps are resolved, edges grouped and states counted once per
    combination, not per connection. The cyclic GC is paused during the call (the analysis allocates
    a few acyclic objects per connection; collections would rescan the whole snapshot, again and
    again as it grows) and restored after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_talk_map(snapshot)
    finally:
        if was_enabled:
            gc.enable()


def _build_talk_map(snapshot: Snapshot) -> TalkMap:
    rows, unpaired, listeners, combos = _paired_rows(snapshot)
    procs = snapshot.processes

    def owners_of(sock: SocketRecord | None) -> list[ProcessInfo]:
        if sock is None:
            return []
        return [procs[k] for k in sock.owners if k in procs]

    apps = find_apps(((owners_of(s), s.local.port) for s in listeners), netns=snapshot.netns)
    by_owner = {k: a for a in apps for k in a.key.processes}
    unowned = {a.key: a for a in apps if not a.processes}
    # The combinations in the order of their first connection (as a walk over the connections would
    # meet them: the order of edges, states and labels follows).
    ordered = sorted(combos.items(), key=_first_seen)
    groups: dict[tuple[AppKey, AppKey, int, Proto], _EdgeAcc] = {}
    ephemeral_raw: Counter[tuple[int, int, Proto]] = Counter()
    server_address: dict[int, IPAddress] = {}
    self_calls = 0
    # The apps of a connection depend only on its listener and the owners of its two ends.
    resolved: dict[tuple[int, tuple[ProcessKey, ...], tuple[ProcessKey, ...]], _Resolved] = {}
    for combo, count in ordered:
        conn, n = count.sample, count.connections
        rkey = combo[:3]  # (id(listener), server owners, client owners)
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
        if hit.is_self:
            self_calls += n
        # Connections to a port nobody listens on any more (TIME_WAIT leftovers) fold into port 0.
        port = conn.server.port if conn.listener is not None or hit.has_server_owners else 0
        gkey = (client.key, server.key, port, conn.proto)
        acc = groups.get(gkey)
        if acc is None:
            acc = groups[gkey] = _EdgeAcc(client=client, server=server)
        acc.connections += n
        acc.states[conn.state.value] += n
        acc.client_pids.update(hit.client_pids)
        acc.server_pids.update(hit.server_pids)
        if conn.listener is not None:  # counted by raw key here, labelled once below
            address = conn.server.address
            server_address[id(address)] = address
            ephemeral_raw[id(address), conn.server.port, conn.proto] += n
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
        connections=tuple(map(_CONNECTION, rows)),
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

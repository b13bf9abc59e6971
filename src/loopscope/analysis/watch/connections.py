"""Apps and connection instances of a watch window, joined across eBPF, destroy events, snapshots and
HTTP lines (pure).

- An **app** is the set of processes owning a listener (:mod:`loopscope.analysis.apps`; listeners whose
  owner sets overlap merge, across every snapshot of the window).
- A **connection instance** is one TCP connection to a listener of this namespace. Ports are reused
  within a window (``tcp_tw_reuse``), so instances are keyed by socket cookie, and a 4-tuple lookup
  (for HTTP lines) takes the latest instance opened before the line.
- Opening: the eBPF ACTIVE event (client pid exact) and the PASSIVE one (server cookie); without eBPF,
  the server side's destroy message (it keeps the 4-tuple even when the client sent RST); connections
  already open come from snapshots (owners from the /proc fd scan).
- **Idle** connections: seen in snapshots only, with no event in the window (no eBPF or destroy event
  by cookie, no HTTP line on their 4-tuple). A busy host holds tens of thousands (pools, keep-alive):
  :func:`join_connections` counts them per destination and client process (:class:`IdleGroup`) instead
  of making an instance of each; they carry no time, bytes or request, so every count of the report is
  the same either way (:func:`build_instances` expands them, the per-connection reference).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from loopscope.analysis.apps import App, find_apps
from loopscope.analysis.scope import is_loopback, unmap
from loopscope.analysis.watch.model import WatchData
from loopscope.model import Endpoint, IPAddress, ProcessInfo, TcpInfo
from loopscope.model.events import ConnectKind, HttpEvent, HttpKind

__all__ = ["IdleGroup", "Instance", "build_instances", "find_window_apps", "join_connections"]


@dataclass(slots=True, kw_only=True)
class Instance:
    """One connection to a local listener during the window (mutable while being built)."""

    client: Endpoint
    """Client end (unmapped)."""
    server: Endpoint
    """Server end (unmapped)."""
    opened_ns: int | None = None
    """connect() time; None when it opened before the window."""
    closed_ns: int | None = None
    """Destroy time of either end."""
    client_pid: int | None = None
    """Client pid (eBPF, or the snapshot's fd owner)."""
    client_process: ProcessInfo | None = None
    """Client process details when known."""
    client_comm: str | None = None
    """Client name captured by eBPF at connect time (``bpf_get_current_comm``: the calling thread's
    comm), known even when the process exited before ``/proc`` was read."""
    client_cookie: int | None = None
    """Client socket cookie."""
    server_cookie: int | None = None
    """Server socket cookie."""
    established: bool = True
    """False when the connect got no server side (refused, or the SYN was dropped)."""
    client_rst: bool = False
    """The client end closed with RST (its destroy message lost the remote address)."""
    tcp_info: TcpInfo | None = None
    """Client-side counters at close (bytes_sent = client -> server)."""
    server_tcp_info: TcpInfo | None = None
    """Server-side counters at close."""
    requests: list[HttpEvent] = field(default_factory=list)
    """HTTP request lines on this connection."""
    responses: list[HttpEvent] = field(default_factory=list)
    """HTTP status lines on this connection."""
    source: str = ""
    """Which source opened it: ``ebpf``, ``destroy`` or ``snapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleGroup:
    """Idle connections of the window (snapshots only, no event) from one client address and process
    to one destination, counted."""

    client_address: IPAddress
    """Client address (unmapped), which tells a local client from a remote one."""
    server: Endpoint
    """Destination (unmapped)."""
    client_process: ProcessInfo | None
    """First owner of the client sockets (the /proc fd scan), None when unknown."""
    client_pid: int | None
    """Its pid."""
    connections: int
    """How many connections."""


@dataclass(slots=True)
class _Idle:
    """One idle connection while the window is joined (its owner may be learnt from a later sample)."""

    client: Endpoint
    """Client end."""
    server: Endpoint
    """Server end."""
    client_process: ProcessInfo | None
    """First owner of the client socket."""
    client_pid: int | None
    """Its pid."""


def find_window_apps(data: WatchData) -> list[App]:
    """Apps from the listeners seen in any sample of the window, sorted by ports (see
    :func:`loopscope.analysis.apps.find_apps`; the window holds one namespace, so keys carry no netns)."""
    return find_apps((lst.owners, lst.local.port) for s in data.samples for lst in s.listeners)


def _ep(ep: Endpoint) -> Endpoint:
    return Endpoint(unmap(ep.address), ep.port)


def _is_local(addr: IPAddress, hosts: frozenset[IPAddress]) -> bool:
    return is_loopback(addr) or unmap(addr) in hosts


class _Index:
    """4-tuple -> instances sorted by open time."""

    def __init__(self) -> None:
        self.by_tuple: dict[tuple[Endpoint, Endpoint], list[Instance]] = {}

    def add(self, inst: Instance) -> None:
        bisect.insort(
            self.by_tuple.setdefault((inst.client, inst.server), []),
            inst,
            key=lambda i: -1 if i.opened_ns is None else i.opened_ns,
        )

    def find(self, client: Endpoint, server: Endpoint, at_ns: int | None) -> Instance | None:
        found = self.by_tuple.get((client, server))
        if not found:
            return None
        if at_ns is None or len(found) == 1:
            return found[-1]
        times = [i.opened_ns if i.opened_ns is not None else -1 for i in found]
        pos = bisect.bisect_right(times, at_ns) - 1
        return found[max(pos, 0)]


def build_instances(data: WatchData, apps: list[App]) -> list[Instance]:
    """Every connection to a listener of this namespace seen in the window, joined across sources, one
    instance each (idle ones too: the per-connection path, see :func:`join_connections`)."""
    return [e for e in join_connections(data, apps, expand_idle=True) if isinstance(e, Instance)]


def join_connections(
    data: WatchData, apps: list[App], *, expand_idle: bool = False
) -> list[Instance | IdleGroup]:
    """The connections of the window joined across sources: an :class:`Instance` per connection with an
    event in the window, an :class:`IdleGroup` per destination and client process for the idle ones.

    Args:
        data: the window.
        apps: :func:`find_window_apps` of ``data``.
        expand_idle: make an instance of every idle connection too (no group; as :func:`build_instances`).

    Returns:
        Instances in the order their connection was first seen (connects, closes, snapshots, HTTP
        lines); each group stands where its first connection was seen.

    Example: 50,000 pooled connections of nginx workers 101-104 to 127.0.0.1:8000 seen in two snapshots,
    200 of them carrying HTTP lines -> 200 instances and 4 groups (one per worker) of 12,450 in all.
    """
    hosts: frozenset[IPAddress] = frozenset().union(*(s.host_addresses for s in data.samples))
    ports = {p for a in apps for p in a.ports}
    index = _Index()
    by_cookie: dict[int, Instance] = {}
    out: list[Instance] = []
    seq: list[Instance | _Idle] = []  # first-seen order of instances and idle connections
    ebpf = any(s.name == "ebpf_sockops" and s.active for s in data.sources)

    def new(inst: Instance) -> Instance:
        out.append(inst)
        seq.append(inst)
        index.add(inst)
        return inst

    for ev in sorted(data.connects, key=lambda e: e.at_ns):
        if ev.kind is ConnectKind.ACTIVE:
            if ev.remote.port not in ports or not _is_local(ev.remote.address, hosts):
                continue
            inst = new(
                Instance(
                    client=_ep(ev.local),
                    server=_ep(ev.remote),
                    opened_ns=ev.at_ns,
                    client_pid=ev.pid,
                    client_process=data.processes.get(ev.pid or -1),
                    client_comm=ev.comm,
                    client_cookie=ev.cookie,
                    established=False,
                    source="ebpf",
                )
            )
            by_cookie[ev.cookie] = inst
        else:
            if ev.local.port not in ports:
                continue
            client, server = _ep(ev.remote), _ep(ev.local)
            found = index.find(client, server, ev.at_ns)
            if found is None or found.server_cookie is not None:
                found = new(
                    Instance(client=client, server=server, opened_ns=ev.at_ns, source="ebpf")
                )
            found.server_cookie = ev.cookie
            found.established = True
            by_cookie[ev.cookie] = found
    # destroy events: enrich by cookie; without eBPF, the server-side message opens the instance
    client_side: dict[tuple[Endpoint, Endpoint], list[tuple[int, TcpInfo | None, int]]] = {}
    rst_ports: dict[int, list[int]] = {}
    for ce in sorted(data.closes, key=lambda e: e.at_ns):
        seen = by_cookie.get(ce.cookie)
        local, remote = _ep(ce.local), _ep(ce.remote)
        if seen is not None:
            seen.closed_ns = max(seen.closed_ns or 0, ce.at_ns)
            if seen.client_cookie == ce.cookie:
                seen.tcp_info = ce.tcp_info
                seen.client_rst = ce.remote.port == 0
            else:
                seen.server_tcp_info = ce.tcp_info
            continue
        if remote.port == 0:
            if local.port not in ports:
                rst_ports.setdefault(local.port, []).append(ce.at_ns)  # a client end that sent RST
            continue  # (or a listener closing); the connection is counted from the server side
        if local.port in ports and not ebpf:
            inst = new(
                Instance(
                    client=remote,
                    server=local,
                    closed_ns=ce.at_ns,
                    server_cookie=ce.cookie,
                    server_tcp_info=ce.tcp_info,
                    source="destroy",
                )
            )
            by_cookie[ce.cookie] = inst
        elif remote.port in ports:
            client_side.setdefault((local, remote), []).append((ce.cookie, ce.tcp_info, ce.at_ns))
    for (client, server), ends in client_side.items():
        for cookie, info, at_ns in ends:
            hit = index.find(client, server, at_ns)
            if hit is not None and hit.client_cookie is None:
                hit.client_cookie, hit.tcp_info = cookie, info
                by_cookie[cookie] = hit
    # client RST messages lost their remote end: match by client port to the nearest closed instance
    if rst_ports:
        by_port: dict[int, list[Instance]] = {}
        for inst in out:
            if inst.closed_ns is not None and inst.client_cookie is None:
                by_port.setdefault(inst.client.port, []).append(inst)
        for port, times in rst_ports.items():
            for at_ns in times:
                cands = [i for i in by_port.get(port, []) if not i.client_rst]
                if cands:
                    best = min(cands, key=lambda i: abs((i.closed_ns or 0) - at_ns))
                    best.client_rst = True
    # long-lived connections from snapshots; those with no event and no HTTP line stay idle
    http_tuples = {(_ep(h.client), _ep(h.server)) for h in data.http}
    http_ports = {server.port for _, server in http_tuples}
    snap_cookie: dict[int, Instance | _Idle] = dict(by_cookie)
    for sample in data.samples:
        for pc in sample.established:
            known: Instance | _Idle | None = None
            if pc.client_cookie is not None:
                known = snap_cookie.get(pc.client_cookie)
            if known is None and pc.server_cookie is not None:
                known = snap_cookie.get(pc.server_cookie)
            if known is None:
                if expand_idle or (
                    pc.server.port in http_ports and (pc.client, pc.server) in http_tuples
                ):
                    known = new(
                        Instance(
                            client=pc.client,
                            server=pc.server,
                            client_cookie=pc.client_cookie,
                            server_cookie=pc.server_cookie,
                            source="snapshot",
                        )
                    )
                else:
                    known = _Idle(
                        client=pc.client, server=pc.server, client_process=None, client_pid=None
                    )
                    seq.append(known)
                for pc_cookie in (pc.client_cookie, pc.server_cookie):
                    if pc_cookie is not None:
                        snap_cookie[pc_cookie] = known
            if known.client_process is None and pc.client_owners:
                known.client_process = pc.client_owners[0]
                known.client_pid = known.client_pid or pc.client_owners[0].pid
    # HTTP lines join by 4-tuple and time
    for hev in sorted(data.http, key=lambda e: e.at_ns):
        target = index.find(_ep(hev.client), _ep(hev.server), hev.at_ns)
        if target is None:
            target = new(Instance(client=_ep(hev.client), server=_ep(hev.server), source="http"))
        (target.requests if hev.kind is HttpKind.REQUEST else target.responses).append(hev)
    return _grouped(seq)


def _grouped(seq: list[Instance | _Idle]) -> list[Instance | IdleGroup]:
    """Instances as they are; idle connections counted per (client address, destination, client
    process), each group where its first connection stands."""
    keys: list[tuple[IPAddress, Endpoint, int, int | None]] = [
        (e.client.address, e.server, id(e.client_process), e.client_pid)
        for e in seq
        if isinstance(e, _Idle)
    ]
    if not keys:
        return [e for e in seq if isinstance(e, Instance)]
    counts = Counter(keys)
    out: list[Instance | IdleGroup] = []
    k = 0
    for e in seq:
        if isinstance(e, Instance):
            out.append(e)
            continue
        n = counts.pop(keys[k], 0)
        k += 1
        if n:
            out.append(
                IdleGroup(
                    client_address=e.client.address,
                    server=e.server,
                    client_process=e.client_process,
                    client_pid=e.client_pid,
                    connections=n,
                )
            )
    return out

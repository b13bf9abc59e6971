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
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from loopscope.analysis.apps import App, find_apps
from loopscope.analysis.scope import is_loopback, unmap
from loopscope.analysis.watch.model import WatchData
from loopscope.model import Endpoint, IPAddress, ProcessInfo, TcpInfo
from loopscope.model.events import ConnectKind, HttpEvent, HttpKind

__all__ = ["Instance", "build_instances", "find_window_apps"]


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
    """Every connection to a listener of this namespace seen in the window, joined across sources."""
    hosts: frozenset[IPAddress] = frozenset().union(*(s.host_addresses for s in data.samples))
    ports = {p for a in apps for p in a.ports}
    index = _Index()
    by_cookie: dict[int, Instance] = {}
    out: list[Instance] = []
    ebpf = any(s.name == "ebpf_sockops" and s.active for s in data.sources)

    def new(inst: Instance) -> Instance:
        out.append(inst)
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
    # long-lived connections from snapshots
    for sample in data.samples:
        for pc in sample.established:
            known = (pc.client_cookie is not None and pc.client_cookie in by_cookie) or (
                pc.server_cookie is not None and pc.server_cookie in by_cookie
            )
            if known:
                ck = pc.client_cookie if pc.client_cookie in by_cookie else pc.server_cookie
                inst = by_cookie[ck if ck is not None else -1]
            else:
                inst = new(
                    Instance(
                        client=pc.client,
                        server=pc.server,
                        client_cookie=pc.client_cookie,
                        server_cookie=pc.server_cookie,
                        source="snapshot",
                    )
                )
                for pc_cookie in (pc.client_cookie, pc.server_cookie):
                    if pc_cookie is not None:
                        by_cookie[pc_cookie] = inst
            if inst.client_process is None and pc.client_owners:
                inst.client_process = pc.client_owners[0]
                inst.client_pid = inst.client_pid or pc.client_owners[0].pid
    # HTTP lines join by 4-tuple and time
    for hev in sorted(data.http, key=lambda e: e.at_ns):
        target = index.find(_ep(hev.client), _ep(hev.server), hev.at_ns)
        if target is None:
            target = new(Instance(client=_ep(hev.client), server=_ep(hev.server), source="http"))
        (target.requests if hev.kind is HttpKind.REQUEST else target.responses).append(hev)
    return out

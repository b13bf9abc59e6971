"""The watch report: per-app rates, self-calls, amplification, call graph and pressure (pure).

Definitions (per app A, over the window):
- **external** inbound: connections/requests to A's listeners whose client is not A (a remote host or
  another local process, e.g. a load balancer or a load generator).
- **self-call**: a connection from a process of A to a listener of A (same process, process group or
  service cgroup; see :mod:`loopscope.analysis.apps`).
- **amplification factor**: internal requests A makes over loopback per external request A receives;
  ``self_factor`` counts only calls to itself. Requests come from the HTTP capture (``--http``); without
  it connections stand in for requests (exact for one request per connection) and ``unit`` says so.
- **per external path**: an internal request at time t is shared equally between the external requests
  to A in flight at t (request line seen, status line not yet).
- **self-call paths**: what A requests from itself, ``"POST /wp-cron.php" -> 26`` (``--http``). Paths are
  the capture's path keys: a routing query parameter stays in them (``/?rest_route=/wp/v2/posts``; see
  :func:`loopscope.backends.linux.http_capture.parse_path_key`), so query-routed endpoints count apart.
- **clients** that own no listener are grouped by name (:mod:`loopscope.analysis.apps`): 300
  short-lived ``curl`` processes are one edge ``curl (300 processes)``, their pids in ``client_pids``.

The call graph (:class:`WatchEdge`) counts connections opened over the window; the talk map's
:class:`loopscope.analysis.talkmap.TalkEdge` counts the connections open in one snapshot.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from loopscope.analysis.apps import EXTERNAL_APP, App, AppKey, app_label, client_app
from loopscope.analysis.scope import is_loopback
from loopscope.analysis.watch.connections import (
    IdleGroup,
    Instance,
    find_window_apps,
    join_connections,
)
from loopscope.analysis.watch.model import WatchData
from loopscope.model import Gap, IPAddress, TcpInfo
from loopscope.model.events import SourceStatus

__all__ = ["AppStats", "ListenerPressure", "WatchEdge", "WatchReport", "summarize_watch"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchEdge:
    """Client -> server app over loopback, aggregated over the window (the call graph)."""

    client_app: AppKey
    """Client app identity (the edge's key with ``server_app`` and ``port``)."""
    server_app: AppKey
    """Server app identity."""
    client: str
    """Client label: the app; for clients that own no listener their name, ``comm[pid]`` for one
    process or ``comm (N processes)`` for more (pids in ``client_pids``); ``pid N`` for one known by pid
    only (no name), ``external`` or ``?``."""
    server: str
    """Server app name."""
    port: int
    """Server port."""
    connections: int
    """Connections opened (or seen) in the window."""
    requests: int | None
    """HTTP requests (None without ``--http``)."""
    bytes_to_server: int
    """Bytes client -> server (tcp_info at close; 0 when no close was seen)."""
    bytes_to_client: int
    """Bytes server -> client."""
    self_call: bool
    """Client app is the server app."""
    client_pids: tuple[int, ...]
    """Client pids seen."""
    refused: int = 0
    """connect() attempts that got no server side (eBPF only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppStats:
    """One app over the window."""

    key: AppKey
    """Identity."""
    name: str
    """``comm[pid,...]``."""
    pids: tuple[int, ...]
    """Listener owner pids."""
    ports: tuple[int, ...]
    """Listening ports."""
    external_connections: int
    """Inbound connections from clients that are not this app."""
    external_requests: int | None
    """Inbound HTTP requests from clients that are not this app (None without --http)."""
    self_connections: int
    """Connections from this app to itself."""
    self_requests: int | None
    """HTTP requests from this app to itself."""
    outbound_connections: int
    """Loopback connections from this app to other local apps."""
    outbound_requests: int | None
    """HTTP requests from this app to other local apps."""
    self_factor: float | None
    """Self-call requests (or connections) per external request; None with no external traffic."""
    total_factor: float | None
    """All internal loopback requests (self + other apps) per external request."""
    unit: str
    """``requests`` (HTTP capture) or ``connections`` (stand-in)."""
    window_s: float
    """Window length, seconds."""
    per_path_factor: dict[str, float] = field(default_factory=dict)
    """External path -> self-call requests per external request on that path (``--http`` only)."""
    external_paths: dict[str, int] = field(default_factory=dict)
    """External requests per path."""
    self_paths: dict[str, int] = field(default_factory=dict)
    """Self-call requests per ``"METHOD path"`` (``--http`` only), busiest first:
    ``{"POST /wp-cron.php": 26}``."""
    statuses: dict[int, int] = field(default_factory=dict)
    """Response status counts on inbound connections."""
    latency_by_path_ms: dict[str, list[float]] = field(default_factory=dict)
    """Response latencies per inbound path, ms, with their request times in ``latency_times_s``."""
    latency_times_s: dict[str, list[float]] = field(default_factory=dict)
    """Seconds from window start of each latency sample, per path."""

    @property
    def external_per_s(self) -> float:
        """External connections per second."""
        return self.external_connections / self.window_s if self.window_s else 0.0

    @property
    def self_per_s(self) -> float:
        """Self-call connections per second."""
        return self.self_connections / self.window_s if self.window_s else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerPressure:
    """Accept queue of one listener over the window."""

    listener: str
    """``app addr:port``."""
    port: int
    """Port."""
    backlog: int | None
    """Accept queue limit."""
    max_accept_queue: int
    """Highest accept queue length seen."""
    samples: int
    """Snapshots seen."""
    saturated_samples: int
    """Snapshots with the queue at the limit."""
    series: tuple[tuple[float, int], ...] = ()
    """(seconds from start, accept queue) per snapshot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchReport:
    """Everything ``loopscope watch`` reports for one window."""

    netns_label: str
    """Namespace."""
    window_s: float
    """Window length, seconds."""
    started_ns: int
    """Window start (every source live), CLOCK_REALTIME ns."""
    apps: tuple[AppStats, ...]
    """Per app."""
    edges: tuple[WatchEdge, ...]
    """Call graph, busiest first; self-loops have ``self_call``."""
    listeners: tuple[ListenerPressure, ...]
    """Accept queue per listener."""
    connections: int
    """Connections to local listeners seen in the window."""
    client_pid_known: int
    """Of those, how many have a client pid (external ones never do)."""
    refused: int
    """connect() attempts to local addresses with no server side."""
    client_rst: int
    """Connections whose client closed with RST."""
    max_time_wait: int
    """Highest TIME_WAIT count in a snapshot."""
    max_ephemeral: dict[str, int]
    """Highest client-port count toward each destination."""
    ephemeral_range_size: int | None
    """Size of ip_local_port_range."""
    sources: tuple[SourceStatus, ...]
    """Which sources answered."""
    gaps: tuple[Gap, ...]
    """What could not be seen."""
    instances: tuple[Instance, ...] = ()
    """The joined connection instances with an event in the window (for tests and detail); with
    ``expand_idle`` every connection."""
    idle: tuple[IdleGroup, ...] = ()
    """Connections seen in snapshots only, with no event in the window, counted per destination and
    client process (empty with ``expand_idle``)."""
    edge_opens_ns: dict[tuple[AppKey, AppKey, int], list[int]] | None = None
    """Open times (connect, else first close; CLOCK_REALTIME ns) of the established connections per
    edge key ``(client_app, server_app, port)``, for :func:`~loopscope.analysis.watch.timeline.build_timeline`;
    None in a report not made by :func:`summarize_watch`."""


def _payload(sender: TcpInfo | None, receiver: TcpInfo | None) -> int:
    """Payload bytes one way: the sender's tcpi_bytes_sent, else the receiver's tcpi_bytes_received less
    one for the FIN it counts (the SYN is not counted; after a reset there is no FIN, so 1 byte low)."""
    if sender is not None and sender.bytes_sent is not None:
        return sender.bytes_sent
    if receiver is not None and receiver.bytes_received is not None:
        return max(receiver.bytes_received - 1, 0)
    return 0


def _per_path(
    app_insts: list[tuple[Instance, bool]], internal_times: list[int]
) -> dict[str, float]:
    """Share each internal request among the external requests in flight at its time."""
    intervals: list[tuple[int, int, str]] = []
    for inst, external in app_insts:
        if not external:
            continue
        resp = sorted(r.at_ns for r in inst.responses)
        for k, req in enumerate(sorted(inst.requests, key=lambda r: r.at_ns)):
            end = resp[k] if k < len(resp) else req.at_ns
            intervals.append((req.at_ns, end, req.path or "?"))
    if not intervals:
        return {}
    intervals.sort()
    starts = [iv[0] for iv in intervals]
    longest = max(iv[1] - iv[0] for iv in intervals)
    counts = Counter(iv[2] for iv in intervals)
    shares: dict[str, float] = defaultdict(float)
    for t in internal_times:
        hi = bisect.bisect_right(starts, t)
        lo = bisect.bisect_left(starts, t - longest)
        live = [iv[2] for iv in intervals[lo:hi] if iv[1] >= t]
        for path in live:
            shares[path] += 1.0 / len(live)
    return {path: round(shares.get(path, 0.0) / n, 3) for path, n in counts.items()}


@dataclass(slots=True)
class _EdgeAcc:
    """One call-graph edge while the window is folded."""

    client: App
    """Client app."""
    server: App
    """Server app."""
    connections: int = 0
    """Established connections."""
    requests: int = 0
    """HTTP requests."""
    bytes_to_server: int = 0
    """Payload bytes client -> server."""
    bytes_to_client: int = 0
    """Payload bytes server -> client."""
    client_pids: set[int] = field(default_factory=set)
    """Client pids seen."""
    refused: int = 0
    """connect() attempts with no server side."""


def summarize_watch(data: WatchData, *, expand_idle: bool = False) -> WatchReport:
    """Join the events of a window and compute per-app rates, amplification, edges and pressure.

    Args:
        data: the window.
        expand_idle: make an instance of every connection seen in snapshots only (the per-connection
            path: same counts, slower on a host with many long-lived connections; see
            :func:`~loopscope.analysis.watch.connections.join_connections`).
    """
    window_s = max((data.ended_ns - data.started_ns) / 1e9, 1e-9)
    http = any(s.name == "http_capture" and s.active for s in data.sources)
    unit = "requests" if http else "connections"
    apps = find_window_apps(data)
    joined = join_connections(data, apps, expand_idle=expand_idle)
    port_app = {p: a for a in apps for p in a.ports}
    listener_apps = {a.key for a in apps}
    hosts: frozenset[IPAddress] = frozenset().union(*(s.host_addresses for s in data.samples))

    per_app: dict[AppKey, list[tuple[Instance, bool]]] = defaultdict(list)
    outbound: dict[AppKey, list[Instance]] = defaultdict(list)
    idle_ext: Counter[AppKey] = Counter()
    idle_self: Counter[AppKey] = Counter()
    idle_out: Counter[AppKey] = Counter()
    edges: dict[tuple[AppKey, AppKey, int], _EdgeAcc] = {}
    opens: dict[tuple[AppKey, AppKey, int], list[int]] = defaultdict(list)
    insts: list[Instance] = []
    idle: list[IdleGroup] = []
    totals = Counter[str]()
    for entry in joined:
        if isinstance(entry, IdleGroup):
            idle.append(entry)
            server_port, client_address = entry.server.port, entry.client_address
            process, pid, comm = entry.client_process, entry.client_pid, None
            n = entry.connections
            totals["client_pid_known"] += n if pid is not None else 0
        else:
            insts.append(entry)
            server_port, client_address = entry.server.port, entry.client.address
            process, pid, comm = entry.client_process, entry.client_pid, entry.client_comm
            n = 1
            if not entry.established:
                totals["refused"] += 1
            elif pid is not None:
                totals["client_pid_known"] += 1
            totals["client_rst"] += entry.client_rst
        server_app = port_app.get(server_port)
        if server_app is None:
            continue
        local_client = is_loopback(client_address) or client_address in hosts
        client = (
            client_app(
                () if process is None else (process,),
                apps,
                server=server_app,
                pid=pid,
                comm=comm,
            )
            if local_client
            else App(key=EXTERNAL_APP)
        )
        external = client.key != server_app.key
        key = (client.key, server_app.key, server_port)
        e = edges.setdefault(key, _EdgeAcc(client=client, server=server_app))
        if isinstance(entry, IdleGroup):
            (idle_ext if external else idle_self)[server_app.key] += n
            if client.key in listener_apps and external:
                idle_out[client.key] += n
            e.connections += n
            totals["connections"] += n
            if pid is not None:
                e.client_pids.add(pid)
            continue
        inst = entry
        per_app[server_app.key].append((inst, external))
        if client.key in listener_apps and external:
            outbound[client.key].append(inst)
        if not inst.established:
            e.refused += 1
            continue
        totals["connections"] += 1
        opened = inst.opened_ns if inst.opened_ns is not None else inst.closed_ns
        if opened is not None:
            opens[key].append(opened)
        e.connections += 1
        e.requests += len(inst.requests)
        info, sinfo = inst.tcp_info, inst.server_tcp_info
        e.bytes_to_server += _payload(info, sinfo)
        e.bytes_to_client += _payload(sinfo, info)
        if inst.client_pid is not None:
            e.client_pids.add(inst.client_pid)
    app_stats = []
    for app in apps:
        rows = [(i, ext) for i, ext in per_app.get(app.key, []) if i.established]
        ext_conns = sum(1 for _, ext in rows if ext) + idle_ext[app.key]
        self_rows = [i for i, ext in rows if not ext]
        self_conns = len(self_rows) + idle_self[app.key]
        out_rows = [i for i in outbound.get(app.key, []) if i.established]
        out_conns = len(out_rows) + idle_out[app.key]
        ext_req = sum(len(i.requests) for i, ext in rows if ext) if http else None
        self_req = sum(len(i.requests) for i in self_rows) if http else None
        out_req = sum(len(i.requests) for i in out_rows) if http else None
        denom = ext_req if http else ext_conns
        num_self = self_req if http else self_conns
        num_out = out_req if http else out_conns
        self_factor = round(num_self / denom, 3) if denom and num_self is not None else None
        total_factor = round((num_self or 0) / denom + (num_out or 0) / denom, 3) if denom else None
        paths: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        lat: dict[str, list[float]] = defaultdict(list)
        lat_t: dict[str, list[float]] = defaultdict(list)
        for inst, ext in rows:
            statuses.update(r.status for r in inst.responses if r.status is not None)
            reqs = sorted(inst.requests, key=lambda r: r.at_ns)
            resps = sorted(r.at_ns for r in inst.responses)
            for k, req in enumerate(reqs):
                if ext:
                    paths[req.path or "?"] += 1
                if k < len(resps):
                    lat[req.path or "?"].append(round((resps[k] - req.at_ns) / 1e6, 3))
                    lat_t[req.path or "?"].append(round((req.at_ns - data.started_ns) / 1e9, 3))
        internal_times = [r.at_ns for i in self_rows for r in i.requests]
        self_paths = Counter(
            f"{r.method or '?'} {r.path or '?'}" for i in self_rows for r in i.requests
        )
        app_stats.append(
            AppStats(
                key=app.key,
                name=app.label,
                pids=app.pids,
                ports=app.ports,
                external_connections=ext_conns,
                external_requests=ext_req,
                self_connections=self_conns,
                self_requests=self_req,
                outbound_connections=out_conns,
                outbound_requests=out_req,
                self_factor=self_factor,
                total_factor=total_factor,
                unit=unit,
                window_s=window_s,
                per_path_factor=_per_path(rows, internal_times) if http else {},
                external_paths=dict(paths),
                self_paths=dict(sorted(self_paths.items(), key=lambda kv: (-kv[1], kv[0]))),
                statuses=dict(statuses),
                latency_by_path_ms=dict(lat),
                latency_times_s=dict(lat_t),
            )
        )
    edge_list = [
        WatchEdge(
            client_app=k[0],
            server_app=k[1],
            client=app_label(k[0], e.client.processes, pids=e.client_pids),
            server=e.server.label,
            port=k[2],
            connections=e.connections,
            requests=e.requests if http else None,
            bytes_to_server=e.bytes_to_server,
            bytes_to_client=e.bytes_to_client,
            self_call=k[0] == k[1],
            client_pids=tuple(sorted(e.client_pids)),
            refused=e.refused,
        )
        for k, e in edges.items()
    ]
    edge_list.sort(key=lambda e: (-e.connections, e.port, e.client))
    return WatchReport(
        netns_label=data.netns_label,
        window_s=window_s,
        started_ns=data.started_ns,
        apps=tuple(app_stats),
        edges=tuple(edge_list),
        listeners=tuple(_pressure(data, port_app)),
        connections=totals["connections"],
        client_pid_known=totals["client_pid_known"],
        refused=totals["refused"],
        client_rst=totals["client_rst"],
        max_time_wait=max(
            (s.time_wait for s in data.samples if s.time_wait is not None), default=0
        ),
        max_ephemeral=_max_ephemeral(data),
        ephemeral_range_size=_range_size(data),
        sources=data.sources,
        gaps=data.gaps,
        instances=tuple(insts),
        idle=tuple(idle),
        edge_opens_ns=dict(opens),
    )


def _pressure(data: WatchData, port_app: dict[int, App]) -> list[ListenerPressure]:
    series: dict[str, list[tuple[float, int, int | None]]] = defaultdict(list)
    ports: dict[str, int] = {}
    for s in data.samples:
        for lst in s.listeners:
            app = port_app.get(lst.local.port)
            key = f"{app.label if app else '?'} {lst.local}"
            ports[key] = lst.local.port
            series[key].append(
                ((s.at_ns - data.started_ns) / 1e9, lst.accept_queue or 0, lst.backlog)
            )
    out = []
    for key, pts in series.items():
        backlog = pts[-1][2]
        out.append(
            ListenerPressure(
                listener=key,
                port=ports[key],
                backlog=backlog,
                max_accept_queue=max(p[1] for p in pts),
                samples=len(pts),
                saturated_samples=sum(1 for p in pts if p[2] and p[1] >= p[2]),
                series=tuple((round(t, 3), q) for t, q, _ in pts),
            )
        )
    out.sort(key=lambda p: p.port)
    return out


def _max_ephemeral(data: WatchData) -> dict[str, int]:
    best: dict[str, int] = {}
    for s in data.samples:
        for dest, n in s.ephemeral_in_use.items():
            best[dest] = max(best.get(dest, 0), n)
    return best


def _range_size(data: WatchData) -> int | None:
    for s in reversed(data.samples):
        if s.ephemeral_range is not None:
            return s.ephemeral_range[1] - s.ephemeral_range[0] + 1
    return None

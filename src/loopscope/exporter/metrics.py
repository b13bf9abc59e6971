"""The exporter's metric families, built from values (snapshots, kernel counters, the running totals):
no sockets, files or clock here.

Series bounds (documented in docs/exporter.md): client apps are the first ``max_client_apps`` distinct
client names seen (default 200); later ones fold into ``client_app="other"``. Server apps are listener
owners (bounded by the listeners of the host). No label carries a pid or an ephemeral port.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric

from loopscope.analysis.exposure import sensitive_service_of
from loopscope.analysis.listeners import Listener, find_listeners
from loopscope.analysis.scope import classify_address, host_address_set, unmap
from loopscope.analysis.stack import summarize_stack
from loopscope.backends.linux.bpf.counter import ConnectionCount
from loopscope.exporter.doctor import NamespaceChecks
from loopscope.model import Endpoint, Proto, Scope, Snapshot

__all__ = [
    "OTHER_APP",
    "UNKNOWN_APP",
    "CountTotals",
    "Health",
    "NamespaceView",
    "doctor_families",
    "exposure_verdict",
    "listener_app",
    "snapshot_families",
    "traffic_families",
]

OTHER_APP = "other"
"""The client_app value of clients beyond the ``max_client_apps`` bound."""
UNKNOWN_APP = "unknown"
"""A listener without a readable owner, or a destination with no listener in the last snapshot."""

_EdgeKey = tuple[str, str, int, bool]  # client_app, server_app, port, self_call
_LOCAL_SCOPES = (Scope.LOOPBACK, Scope.OWN_ADDRESS)
_DEFAULT_RANGE = (32768, 60999)  # net.ipv4.ip_local_port_range default (as analysis/stack.py)


def listener_app(listener: Listener) -> str:
    """The app name of a listener: the comm of its lowest-pid owner, ``unknown`` without one."""
    owners = sorted(listener.owners, key=lambda p: p.key.pid)
    return owners[0].comm if owners else UNKNOWN_APP


def exposure_verdict(listener: Listener) -> str:
    """``loopback_only``, ``exposed`` (wildcard or host address) or ``sensitive_exposed``."""
    if listener.scope in (Scope.LOOPBACK, Scope.OTHER):
        return "loopback_only"
    return "sensitive_exposed" if sensitive_service_of(listener) is not None else "exposed"


@dataclass(slots=True)
class CountTotals:
    """Running totals fed by the cumulative kernel counters, by deltas, so that a label that changes
    (a listener restarted under another name) never makes a series go down.

    Args:
        max_client_apps: distinct client names kept; the rest fold into ``other``.
    """

    max_client_apps: int = 200
    """Bound on distinct client_app values (``other`` excluded)."""
    last: dict[tuple[object, ...], int] = field(default_factory=dict)
    """Last kernel value per counter key."""
    client_apps: set[str] = field(default_factory=set)
    """Client names admitted so far."""
    edges: dict[_EdgeKey, int] = field(default_factory=dict)
    """(client_app, server_app, port, self_call) -> connections."""
    accepted: dict[tuple[str, int, str], int] = field(default_factory=dict)
    """(app, port, peer local/remote) -> passive establishments."""
    self_calls: dict[str, int] = field(default_factory=dict)
    """app -> connections it opened to its own listeners."""
    external: dict[str, int] = field(default_factory=dict)
    """app -> accepted connections not opened by itself (monotonic)."""
    counted: int = 0
    """Increments read from the kernel, all keys."""

    def client_app(self, comm: str) -> str:
        """``comm`` while fewer than ``max_client_apps`` names are admitted, else ``other``."""
        if comm in self.client_apps:
            return comm
        if len(self.client_apps) < self.max_client_apps:
            self.client_apps.add(comm)
            return comm
        return OTHER_APP

    def add(
        self,
        counts: Iterable[ConnectionCount],
        server_app_of: Mapping[tuple[int, object, int], str],
    ) -> None:
        """Fold one read of the kernel map in.

        Args:
            counts: every counter, cumulative since the program was loaded.
            server_app_of: ``(netns cookie, unmapped address, port) -> app``; a missing key
                falls back to ``(cookie, None, port)`` (wildcard listeners), then ``unknown``.
        """
        passive_cum: dict[str, int] = {}
        for app in set(server_app_of.values()):  # every listening app has its series from the start
            self.self_calls.setdefault(app, 0)
            self.external.setdefault(app, 0)
        for c in counts:
            key = (c.passive, c.client_comm, c.address, c.port, c.netns_cookie, c.peer_local)
            delta = c.count - self.last.get(key, 0)
            self.last[key] = c.count
            if delta < 0:  # the map was recreated: treat the value as new
                delta = c.count
            addr = unmap(c.address)
            server = server_app_of.get(
                (c.netns_cookie, addr, c.port),
                server_app_of.get((c.netns_cookie, None, c.port), UNKNOWN_APP),
            )
            self.counted += delta
            if c.passive:
                peer = "local" if c.peer_local else "remote"
                akey = (server, c.port, peer)
                self.accepted[akey] = self.accepted.get(akey, 0) + delta
                continue
            client = self.client_app(c.client_comm or UNKNOWN_APP)
            is_self = client == server and server != UNKNOWN_APP
            ekey = (client, server, c.port, is_self)
            self.edges[ekey] = self.edges.get(ekey, 0) + delta
            if is_self:
                self.self_calls[server] = self.self_calls.get(server, 0) + delta
        for (app, _port, _peer), n in self.accepted.items():
            passive_cum[app] = passive_cum.get(app, 0) + n
        for app, n in passive_cum.items():
            ext = max(self.external.get(app, 0), n - self.self_calls.get(app, 0))
            self.external[app] = ext


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """The exporter's own state at this scrape."""

    connection_source: str
    """``ebpf_counter`` or ``none`` (no root / no cgroup2: traffic metrics absent)."""
    connection_source_reason: str
    """Why the source is ``none`` (empty otherwise)."""
    map_full: int
    """Increments lost because the kernel map was full (cumulative)."""
    map_entries: int
    """Keys in the kernel map."""
    map_capacity: int
    """Its max_entries."""
    scrape_duration_s: float
    """Time spent producing the previous scrape, seconds."""
    cpu_s: float
    """Exporter process CPU time (user + system), seconds."""
    gaps: int
    """Gaps recorded by the snapshots (unreadable owners, namespaces left out, a failed count)."""
    counts_age_s: float | None = None
    """Age of the ephemeral-port and TIME_WAIT counts, seconds; None before the first count."""
    counting_duration_s: float | None = None
    """Wall time of the last counting pass, seconds; None before the first one."""
    counting_failures: int = 0
    """Counting passes that failed (cumulative)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceView:
    """One namespace as the exporter reads it: TIME_WAIT comes as counts, not rows (a busy host
    holds 100k of them; rows would make the scrape and the heap grow with the connection rate)."""

    snapshot: Snapshot
    """Listeners (owners attributed), connections, links, addresses, sysctls; no TIME_WAIT rows."""
    netns_cookie: int | None
    """SO_NETNS_COOKIE of the namespace (matches the kernel counters); None when unknown."""
    time_wait_by_dest: Mapping[Endpoint, int] = field(default_factory=dict)
    """TIME_WAIT sockets per destination listener of this namespace (client side: they hold
    ephemeral ports)."""
    time_wait_other: int = 0
    """The other TIME_WAIT sockets (server side, remote destinations)."""
    connected_by_dest: Mapping[Endpoint, int] = field(default_factory=dict)
    """Connected TCP sockets per destination listener of this namespace, when the collector counts
    them instead of making records (client side: one ephemeral port each)."""
    connected_ports: frozenset[int] = frozenset()
    """Distinct local ports of the counted connected TCP sockets."""


def snapshot_families(views: Sequence[NamespaceView]) -> list[Metric]:
    """Stack, listener, queue, ephemeral-port and TIME_WAIT families of every namespace."""
    up = GaugeMetricFamily(
        "loopscope_loopback_up", "lo is administratively up (1) or not (0).", labels=["netns"]
    )
    v4 = GaugeMetricFamily(
        "loopscope_loopback_ipv4_present", "127.0.0.1/8 is assigned to lo.", labels=["netns"]
    )
    v6 = GaugeMetricFamily(
        "loopscope_loopback_ipv6_present", "::1 is assigned to lo.", labels=["netns"]
    )
    info = InfoMetricFamily(
        "loopscope_listener",
        "A listening socket: protocol, bind address and port, scope, app (owner comm), exposure verdict.",
        labels=["netns", "proto", "address", "port", "scope", "app", "exposure"],
    )
    queue = GaugeMetricFamily(
        "loopscope_listener_accept_queue",
        "Connections waiting for accept() on a TCP listener.",
        labels=["netns", "address", "port", "app"],
    )
    backlog = GaugeMetricFamily(
        "loopscope_listener_backlog",
        "Accept queue limit of a TCP listener (connections).",
        labels=["netns", "address", "port", "app"],
    )
    eph = GaugeMetricFamily(
        "loopscope_ephemeral_ports_in_use",
        "Ephemeral local ports held toward one loopback destination (top 10 per namespace).",
        labels=["netns", "destination"],
    )
    eph_all = GaugeMetricFamily(
        "loopscope_ephemeral_ports_in_use_all",
        "Distinct ephemeral local TCP ports in use in the namespace.",
        labels=["netns"],
    )
    eph_size = GaugeMetricFamily(
        "loopscope_ephemeral_port_range_size",
        "Ports in net.ipv4.ip_local_port_range.",
        labels=["netns"],
    )
    tw = GaugeMetricFamily(
        "loopscope_tcp_time_wait_sockets",
        "TCP sockets in TIME_WAIT (loopback=true: toward a listener of this namespace).",
        labels=["netns", "loopback"],
    )
    for view in views:
        snap = view.snapshot
        ns = snap.netns_label
        summary = summarize_stack(snap)
        tw_local = sum(view.time_wait_by_dest.values())
        by_dest: Counter[str] = Counter(summary.ephemeral_by_destination)
        hosts = host_address_set(snap.addresses)
        for counts in (view.time_wait_by_dest, view.connected_by_dest):
            for ep, n in counts.items():
                if classify_address(ep.address, hosts) in _LOCAL_SCOPES:
                    by_dest[str(ep)] += n
        low, high = snap.stack.ip_local_port_range or _DEFAULT_RANGE
        counted_in_use = sum(1 for p in view.connected_ports if low <= p <= high)
        up.add_metric([ns], 1.0 if summary.lo_up else 0.0)
        v4.add_metric([ns], 1.0 if summary.has_127_8 else 0.0)
        v6.add_metric([ns], 1.0 if summary.has_v6_loopback else 0.0)
        for dest, n in by_dest.most_common(10):
            eph.add_metric([ns, dest], float(n))
        eph_all.add_metric([ns], float(summary.ephemeral_in_use + counted_in_use + tw_local))
        if summary.ephemeral_range_size is not None:
            eph_size.add_metric([ns], float(summary.ephemeral_range_size))
        tw.add_metric([ns, "true"], float(summary.time_wait_loopback + tw_local))
        tw.add_metric(
            [ns, "false"],
            float(summary.time_wait - summary.time_wait_loopback + view.time_wait_other),
        )
        seen: set[tuple[str, ...]] = set()
        for lst in find_listeners(snap):
            app = listener_app(lst)
            labels = [
                ns,
                lst.proto.value,
                str(lst.local.address),
                str(lst.local.port),
                lst.scope.value,
                app,
                exposure_verdict(lst),
            ]
            if tuple(labels) in seen:  # SO_REUSEPORT groups: one series
                continue
            seen.add(tuple(labels))
            info.add_metric(labels, {})
            if lst.proto is Proto.TCP and lst.accept_queue is not None:
                qlabels = [ns, str(lst.local.address), str(lst.local.port), app]
                queue.add_metric(qlabels, float(lst.accept_queue))
                if lst.backlog is not None:
                    backlog.add_metric(qlabels, float(lst.backlog))
    return [up, v4, v6, info, queue, backlog, eph, eph_all, eph_size, tw]


def traffic_families(totals: CountTotals, health: Health) -> list[Metric]:
    """Connection counters and the exporter's health."""
    edges = CounterMetricFamily(
        "loopscope_loopback_connections",
        "TCP connections opened over loopback (or to an own address), by client app, server app and "
        "server port; self_call=true when both are the same app. Counted in the kernel.",
        labels=["client_app", "server_app", "port", "self_call"],
    )
    for (client, server, port, is_self), n in sorted(totals.edges.items()):
        edges.add_metric([client, server, str(port), "true" if is_self else "false"], float(n))
    accepted = CounterMetricFamily(
        "loopscope_accepted_connections",
        "TCP connections established on an app's listeners, by peer: local (loopback or own address) "
        "or remote.",
        labels=["app", "port", "peer"],
    )
    for (app, port, peer), n in sorted(totals.accepted.items()):
        accepted.add_metric([app, str(port), peer], float(n))
    per_app = CounterMetricFamily(
        "loopscope_app_connections",
        "Connections accepted by an app, by kind: self (opened by the app itself) or external "
        "(anyone else, local or remote).",
        labels=["app", "kind"],
    )
    for app in sorted(set(totals.external) | set(totals.self_calls)):
        per_app.add_metric([app, "self"], float(totals.self_calls.get(app, 0)))
        per_app.add_metric([app, "external"], float(totals.external.get(app, 0)))
    out: list[Metric] = [edges, accepted, per_app]
    counted = CounterMetricFamily(
        "loopscope_exporter_events_counted", "Connection events counted in the kernel and read."
    )
    counted.add_metric([], float(totals.counted))
    lost = CounterMetricFamily(
        "loopscope_exporter_events_lost",
        "Connection events not counted, by reason (map_full: the kernel hash map had no room).",
        labels=["reason"],
    )
    lost.add_metric(["map_full"], float(health.map_full))
    entries = GaugeMetricFamily(
        "loopscope_exporter_map_entries",
        "Keys in the kernel counter map, and its capacity.",
        labels=["kind"],
    )
    entries.add_metric(["used"], float(health.map_entries))
    entries.add_metric(["capacity"], float(health.map_capacity))
    folded = GaugeMetricFamily(
        "loopscope_exporter_client_apps",
        "Distinct client app names admitted (at most the configured bound; the rest are 'other').",
    )
    folded.add_metric([], float(len(totals.client_apps)))
    duration = GaugeMetricFamily(
        "loopscope_exporter_scrape_duration_seconds", "Time the previous scrape took to produce."
    )
    duration.add_metric([], health.scrape_duration_s)
    counts_age = GaugeMetricFamily(
        "loopscope_exporter_counts_age_seconds",
        "Age of the ephemeral-port and TIME_WAIT counts (counted every --counts-interval, off the "
        "scrape path).",
    )
    counting = GaugeMetricFamily(
        "loopscope_exporter_counting_duration_seconds",
        "Wall time of the last count of ephemeral ports and TIME_WAIT (a host-wide table walk).",
    )
    if health.counts_age_s is not None:
        counts_age.add_metric([], health.counts_age_s)
    if health.counting_duration_s is not None:
        counting.add_metric([], health.counting_duration_s)
    counting_failed = CounterMetricFamily(
        "loopscope_exporter_counting_failures",
        "Counts of ephemeral ports and TIME_WAIT that failed (the previous counts are kept; logged).",
    )
    counting_failed.add_metric([], float(health.counting_failures))
    cpu = CounterMetricFamily(
        "loopscope_exporter_cpu_seconds", "CPU time (user + system) of the exporter process."
    )
    cpu.add_metric([], health.cpu_s)
    gaps = GaugeMetricFamily(
        "loopscope_exporter_gaps", "Things the last snapshot could not see (see the logs)."
    )
    gaps.add_metric([], float(health.gaps))
    source = InfoMetricFamily(
        "loopscope_exporter_source",
        "Which source answers for connection counts (ebpf_counter or none, with the reason).",
        labels=["connection_source", "reason"],
    )
    source.add_metric([health.connection_source, health.connection_source_reason], {})
    own = [counted, lost, entries, folded, duration, counts_age, counting, counting_failed, cpu]
    return [*out, *own, gaps, source]


def doctor_families(results: Sequence[NamespaceChecks], age_s: float | None) -> list[Metric]:
    """Doctor rung-1 verdicts: one info series per check, and the age of the results."""
    checks = InfoMetricFamily(
        "loopscope_doctor_check",
        "A doctor rung-1 check (loopback stack) and its verdict: ok, warn, fail or skipped; code names "
        "the finding (LO_DOWN, ...). Refreshed every --doctor-interval seconds.",
        labels=["netns", "check", "verdict", "code"],
    )
    for ns in results:
        seen: set[str] = set()
        for check in ns.rung.checks:
            if check.id in seen:  # one series per check id
                continue
            seen.add(check.id)
            checks.add_metric([ns.netns, check.id, str(check.verdict), check.code], {})
    age = GaugeMetricFamily(
        "loopscope_doctor_age_seconds", "Seconds since the doctor checks last ran."
    )
    if age_s is not None:
        age.add_metric([], age_s)
    return [checks, age]

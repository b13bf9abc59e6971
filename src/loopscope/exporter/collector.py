"""The Prometheus collector: listeners, queues and the kernel counter map are read at scrape time;
ephemeral ports and TIME_WAIT are counted off the scrape path (:mod:`.counting`: a background thread
started by :meth:`LoopscopeCollector.start`, or inline every ``counts_interval_s`` without it).
Constructing it reads and starts nothing; the kernel counter is passed in by the caller, who owns it
(and detaches it on exit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from loopscope.analysis.listeners import find_listeners
from loopscope.analysis.scope import is_wildcard, unmap
from loopscope.backends.linux.bpf.counter import ConnectionCount, ConnectionCounter
from loopscope.errors import LoopscopeError
from loopscope.exporter.counting import CountedState, CountedViews
from loopscope.exporter.doctor import DoctorChecks
from loopscope.exporter.http import HttpCounts, HttpTotals, http_families
from loopscope.exporter.metrics import (
    CountTotals,
    Health,
    NamespaceView,
    doctor_families,
    listener_app,
    snapshot_families,
    traffic_families,
)
from loopscope.model import Proto

if TYPE_CHECKING:
    from loopscope.backends.linux.procfs import OwnerScan
    from loopscope.collect import Collection
    from loopscope.collect import Collector as SnapshotCollector

__all__ = [
    "ExporterOptions",
    "LoopscopeCollector",
    "OwnerCache",
    "make_snapshot_collector",
    "read_namespaces",
    "server_apps",
    "with_counts",
]

log = logging.getLogger("loopscope.exporter")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExporterOptions:
    """What the collector reads."""

    all_netns: bool = False
    """Every network namespace (containers) instead of this one."""
    max_client_apps: int = 200
    """Distinct client_app values kept; later ones fold into ``other``."""
    source: str = "auto"
    """Socket source (``auto``, ``sock_diag``, ``procfs``, ``psutil``)."""
    counts_interval_s: float = 30.0
    """Ephemeral ports and TIME_WAIT are re-counted this often, seconds, by a background thread (or
    inline in the scrape that comes due without it, e.g. ``--textfile``; 0: inline at every scrape);
    scrapes read listeners and the last counts. Counting walks the kernel's established table,
    which is host-wide (every namespace's sockets), so its cost follows the whole host."""
    doctor_interval_s: float = 300.0
    """Doctor rung-1 checks run at most this often, seconds (0: never)."""
    http: bool = False
    """Count HTTP/1.x requests per edge from start lines captured on lo (CAP_NET_RAW)."""
    owner_rescan_s: float = 60.0
    """Longest reuse of one /proc fd scan (listener owners), seconds; a scan is made sooner when a
    listener appears that the last scan did not see, an owner exited, or a namespace vanished."""


def read_namespaces(
    collector: SnapshotCollector, all_netns: bool, owners: OwnerCache | None = None
) -> list[NamespaceView]:
    """The one call into the collection layer: every namespace asked (owners of listeners only,
    TIME_WAIT and connected sockets as counts) with its SO_NETNS_COOKIE.

    Args:
        collector: from :func:`make_snapshot_collector`.
        all_netns: every namespace instead of this one.
        owners: reuse of the fd scan across scrapes (None: a fresh scan each call).

    Raises:
        LoopscopeError: the socket source failed.
    """
    from loopscope.backends.linux.bpf.sockops import netns_cookie_of_current
    from loopscope.backends.linux.netns import run_in_netns

    if owners is not None:
        run = owners.read(collector, all_netns)
    else:
        run = collector.read_all(all_netns=all_netns)
    out: list[NamespaceView] = []
    for reading in run.readings:
        cookie: int | None = None
        with contextlib.suppress(LoopscopeError, OSError):
            cookie = run_in_netns(reading.target, netns_cookie_of_current)
        snap = reading.snapshot
        if run.skipped and not out:
            gaps = snap.gaps + tuple(s.gap() for s in run.skipped)
            snap = dataclasses.replace(snap, gaps=gaps)
        out.append(
            NamespaceView(
                snapshot=snap,
                netns_cookie=cookie,
                time_wait_by_dest=reading.time_wait_by_dest,
                time_wait_other=reading.time_wait_other,
                connected_by_dest=reading.connected_by_dest,
                connected_ports=reading.connected_ports,
            )
        )
    return out


def make_snapshot_collector(source: str) -> SnapshotCollector:
    """The collection layer's collector as the exporter configures it: listeners' owners only (the
    fd scan looks for listener inodes), TIME_WAIT and connected TCP sockets as counts (no record per
    connection: the metrics need listeners, and per-destination counts for ephemeral ports)."""
    from loopscope.collect import Collector, Connected, OwnerScope, TimeWait

    return Collector.for_source(
        source,
        owner_scope=OwnerScope.LISTENERS,
        time_wait=TimeWait.COUNTS,
        connected=Connected.COUNTS,
    )


class OwnerCache:
    """One /proc fd scan reused across scrapes: the scan reads every fd of every process (~80 ms
    with 10k sockets held), while the listener owners it is used for rarely change.

    A fresh scan is made when the last one is older than ``max_age_s``, or, after a read with the
    reused scan, when a listener inode appears that the last fresh scan did not see (a restarted
    app), an owner it named is gone (no process details), or a namespace could not be entered; that
    read is then redone with the fresh scan.

    Args:
        max_age_s: longest reuse, seconds.
        clock_s: monotonic clock, seconds.
    """

    def __init__(self, max_age_s: float, clock_s: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self.clock_s = clock_s
        self.scan: OwnerScan | None = None
        self.scanned_at_s = 0.0
        self.listener_inodes: frozenset[int] = frozenset()
        self.scans = 0
        """Fresh scans made (for tests and the log)."""

    def read(self, collector: SnapshotCollector, all_netns: bool) -> Collection:
        """One read of the namespaces, with the kept scan when it is still good.

        Raises:
            LoopscopeError: the socket source failed.
        """
        if self.scan is not None and self.clock_s() - self.scanned_at_s < self.max_age_s:
            run = collector.read_all(all_netns=all_netns, owners=self.scan)
            if not self._stale(run):
                return run
        run = collector.read_all(all_netns=all_netns)
        self.scans += 1
        self.listener_inodes = frozenset(_listener_inodes(run))
        self.scan, self.scanned_at_s = (
            _trimmed(run.owner_scan, self.listener_inodes),
            self.clock_s(),
        )
        return run

    def _stale(self, run: Collection) -> bool:
        if run.skipped or not self.listener_inodes.issuperset(_listener_inodes(run)):
            return True
        return any(
            key not in r.snapshot.processes
            for r in run.readings
            for s in r.snapshot.sockets
            if s.is_listener
            for key in s.owners
        )


def _trimmed(scan: OwnerScan | None, inodes: frozenset[int]) -> OwnerScan | None:
    """The scan with the owners of ``inodes`` only: a scan names every socket of every process on
    the host (100,000 sockets: ~13 MB); the listeners' owners are all a later read uses."""
    if scan is None:
        return None
    return dataclasses.replace(scan, owners={i: scan.owners[i] for i in inodes if i in scan.owners})


def _listener_inodes(run: Collection) -> Iterator[int]:
    for reading in run.readings:
        for s in reading.snapshot.sockets:
            if s.is_listener and s.inode is not None:
                yield s.inode


def server_apps(
    views: Sequence[NamespaceView],
) -> dict[tuple[int, object, int], str]:
    """``(netns cookie, unmapped address or None for wildcard, port) -> listener app`` for TCP."""
    out: dict[tuple[int, object, int], str] = {}
    for view in views:
        cookie = view.netns_cookie
        if cookie is None:
            continue
        for lst in find_listeners(view.snapshot):
            if lst.proto is not Proto.TCP:
                continue
            addr = unmap(lst.local.address)
            key = (cookie, None if is_wildcard(addr) else addr, lst.local.port)
            out.setdefault(key, listener_app(lst))
    return out


class LoopscopeCollector(Collector):
    """A prometheus-client collector on an explicit registry.

    Args:
        options: what to read.
        counter: the attached kernel counter, or None (traffic metrics absent, stated in
            ``loopscope_exporter_source_info``).
        counter_reason: why ``counter`` is None.
    """

    def __init__(
        self,
        options: ExporterOptions,
        counter: ConnectionCounter | None,
        counter_reason: str = "",
    ) -> None:
        self.options = options
        self.counter = counter
        self.counter_reason = counter_reason
        self.totals = CountTotals(max_client_apps=options.max_client_apps)
        self._lock = threading.Lock()
        self._last_duration_s = 0.0
        self._listening: SnapshotCollector | None = None  # made at the first scrape
        self._counting: SnapshotCollector | None = None  # made at the first count
        self.counts = CountedViews(self._count_now, options.counts_interval_s)
        """The last ephemeral-port and TIME_WAIT counts (refreshed off the scrape path once
        :meth:`start` ran)."""
        self.owners = OwnerCache(options.owner_rescan_s)
        self.http: HttpCounts | None = None  # made by start() with options.http
        self.http_totals = HttpTotals()
        self.doctor = DoctorChecks(options.doctor_interval_s, all_netns=options.all_netns)

    def start(self, *, background_counts: bool = True) -> None:
        """Start the background work: the counting thread (unless ``background_counts`` is False,
        as for ``--textfile``, or the counts interval is 0: then the scrape counts inline)."""
        if background_counts:
            self.counts.start()
        if self.options.http and self.http is None:
            self._start_http()

    def _start_http(self) -> None:
        from loopscope.backends.linux.bpf.sockops import netns_cookie_of_current

        cookie = netns_cookie_of_current()
        if cookie is None:
            self.http_totals.up = False
            log.warning("HTTP counting unavailable: no SO_NETNS_COOKIE (kernel < 5.14)")
            return
        self.http = HttpCounts(self.counter, cookie)
        with self._lock:  # the listeners' ports first: the capture opens on them at once
            try:
                views, _ = self._read_views()
            except LoopscopeError as exc:
                log.warning("snapshot failed: %s", exc)
                views = []
        self.http.set_ports(_own_tcp_ports(views, cookie))
        self.http.start()

    def stop(self) -> None:
        """Stop the background work. Idempotent."""
        self.counts.stop()
        if self.http is not None:
            self.http.stop()

    def describe(self) -> list[Metric]:
        """Nothing: registering must not trigger a scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read everything now and yield the families (one scrape at a time)."""
        with self._lock:
            yield from self._collect()

    def _collect(self) -> list[Metric]:
        t0 = time.perf_counter()
        families: list[Metric] = []
        gaps = 0
        views: list[NamespaceView] = []
        counted = CountedState()
        try:
            views, counted = self._read_views()
        except LoopscopeError as exc:
            log.warning("snapshot failed: %s", exc)
            gaps += 1
        gaps += 1 if counted.last_failed else 0
        gaps += sum(len(v.snapshot.gaps) for v in views)
        families += snapshot_families(views)
        families += doctor_families(self.doctor.results(), self.doctor.age_s())
        counts: list[ConnectionCount] = []
        map_full = entries = 0
        if self.counter is not None:
            counts = self.counter.read()
            entries = len(counts)
            map_full = self.counter.map_full()
            if not self.options.all_netns:  # the program sees every namespace: keep the ones read
                read_cookies = {v.netns_cookie for v in views}
                counts = [c for c in counts if c.netns_cookie in read_cookies]
            self.totals.add(counts, server_apps(views))
        if self.options.http:
            families += self._http_families(views)
        usage = os.times()
        health = Health(
            connection_source="ebpf_counter" if self.counter is not None else "none",
            connection_source_reason=self.counter_reason,
            map_full=map_full,
            map_entries=entries,
            map_capacity=self.counter.max_entries if self.counter is not None else 0,
            scrape_duration_s=self._last_duration_s,
            cpu_s=usage.user + usage.system,
            gaps=gaps,
            counts_age_s=counted.age_s,
            counting_duration_s=counted.duration_s,
            counting_failures=counted.failures,
        )
        families += traffic_families(self.totals, health)
        self._last_duration_s = time.perf_counter() - t0
        return families

    def _http_families(self, views: Sequence[NamespaceView]) -> list[Metric]:
        """Fold the requests captured since the last scrape in; hand the listeners' ports over."""
        if self.http is not None:
            cookie = self.http.netns_cookie
            if views:
                self.http.set_ports(_own_tcp_ports(views, cookie))
            self.http_totals.add(
                self.http.take(), server_apps(views), cookie, self.totals.client_app
            )
        return http_families(self.http_totals)

    def _read_views(self) -> tuple[list[NamespaceView], CountedState]:
        """Listeners every scrape, merged with the last counts of each namespace (counted first,
        inline, when no thread counts and they are due)."""
        from loopscope.collect import Connected, States, TimeWait

        if self._listening is None:
            self._listening = make_snapshot_collector(self.options.source).configured(
                states=States.LISTENING, time_wait=TimeWait.ROWS, connected=Connected.ROWS
            )
        views = read_namespaces(self._listening, self.options.all_netns, self.owners)
        if not self.counts.running:
            self.counts.refresh_if_due()
        counted = self.counts.latest()
        return [with_counts(v, counted.views.get(v.snapshot.netns)) for v in views], counted

    def _count_now(self) -> dict[object, NamespaceView]:
        """One counting pass (the counting thread, or inline): connected sockets and TIME_WAIT as
        counts, no owners (no /proc fd scan) except with ``all_netns``, where the listeners' last
        scan finds the namespaces seen only through a process (containers)."""
        from loopscope.collect import OwnerScope

        all_netns = self.options.all_netns
        if self._counting is None:
            self._counting = make_snapshot_collector(self.options.source)
            if not all_netns:
                self._counting = self._counting.configured(owner_scope=OwnerScope.NONE)
        scan = self.owners.scan if all_netns else None  # a reference read: set whole by OwnerCache
        run = self._counting.read_all(all_netns=all_netns, owners=scan)
        return {
            r.snapshot.netns: NamespaceView(
                snapshot=r.snapshot,
                netns_cookie=None,
                time_wait_by_dest=r.time_wait_by_dest,
                time_wait_other=r.time_wait_other,
                connected_by_dest=r.connected_by_dest,
                connected_ports=r.connected_ports,
            )
            for r in run.readings
        }


def _own_tcp_ports(views: Sequence[NamespaceView], netns_cookie: int) -> set[int]:
    """Ports of the TCP listeners of the namespace ``netns_cookie`` names."""
    return {
        lst.local.port
        for v in views
        if v.netns_cookie == netns_cookie
        for lst in find_listeners(v.snapshot)
        if lst.proto is Proto.TCP
    }


def with_counts(view: NamespaceView, counted: NamespaceView | None) -> NamespaceView:
    """``view`` (listeners only) with the ephemeral-port and TIME_WAIT counts of an earlier read of
    the same namespace (none when it was not counted yet)."""
    if counted is None:
        return view
    return dataclasses.replace(
        view,
        time_wait_by_dest=counted.time_wait_by_dest,
        time_wait_other=counted.time_wait_other,
        connected_by_dest=counted.connected_by_dest,
        connected_ports=counted.connected_ports,
    )

"""The Prometheus collector: everything is read at scrape time (one snapshot of the namespaces, one
read of the kernel counter map). Constructing it reads and starts nothing; the kernel counter is
passed in by the caller, who owns it (and detaches it on exit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from loopscope.analysis.listeners import find_listeners
from loopscope.analysis.scope import is_wildcard, unmap
from loopscope.backends.linux.bpf.counter import ConnectionCount, ConnectionCounter
from loopscope.errors import LoopscopeError
from loopscope.exporter.metrics import (
    CountTotals,
    Health,
    NamespaceView,
    listener_app,
    snapshot_families,
    traffic_families,
)
from loopscope.model import Proto

if TYPE_CHECKING:
    from loopscope.collect import Collector as SnapshotCollector

__all__ = [
    "ExporterOptions",
    "LoopscopeCollector",
    "make_snapshot_collector",
    "read_namespaces",
    "server_apps",
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


def read_namespaces(collector: SnapshotCollector, all_netns: bool) -> list[NamespaceView]:
    """The one call into the collection layer: every namespace asked (owners of listeners only,
    TIME_WAIT as counts) with its SO_NETNS_COOKIE.

    Raises:
        LoopscopeError: the socket source failed.
    """
    from loopscope.backends.linux.bpf.sockops import netns_cookie_of_current
    from loopscope.backends.linux.netns import run_in_netns

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
            )
        )
    return out


def make_snapshot_collector(source: str) -> SnapshotCollector:
    """The collection layer's collector as the exporter configures it: listeners' owners only (the
    fd scan looks for listener inodes), TIME_WAIT as counts."""
    from loopscope.collect import Collector, OwnerScope, TimeWait

    return Collector.for_source(source, owner_scope=OwnerScope.LISTENERS, time_wait=TimeWait.COUNTS)


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
        self._snapshots: SnapshotCollector | None = None  # made at the first scrape

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
        try:
            if self._snapshots is None:
                self._snapshots = make_snapshot_collector(self.options.source)
            views = read_namespaces(self._snapshots, self.options.all_netns)
        except LoopscopeError as exc:
            log.warning("snapshot failed: %s", exc)
            gaps += 1
        gaps += sum(len(v.snapshot.gaps) for v in views)
        families += snapshot_families(views)
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
        )
        families += traffic_families(self.totals, health)
        self._last_duration_s = time.perf_counter() - t0
        return families

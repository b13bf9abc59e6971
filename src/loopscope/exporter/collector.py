"""The Prometheus collector: everything is read at scrape time (one snapshot of the namespaces, one
read of the kernel counter map). Constructing it reads and starts nothing; the kernel counter is
passed in by the caller, who owns it (and detaches it on exit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from loopscope.analysis.listeners import find_listeners
from loopscope.analysis.scope import is_wildcard, unmap
from loopscope.backends.linux.bpf.counter import ConnectionCount, ConnectionCounter
from loopscope.errors import LoopscopeError
from loopscope.exporter.metrics import (
    CountTotals,
    Health,
    listener_app,
    snapshot_families,
    traffic_families,
)
from loopscope.model import Proto, Snapshot

__all__ = ["ExporterOptions", "LoopscopeCollector", "read_snapshots"]

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


def read_snapshots(options: ExporterOptions) -> list[tuple[Snapshot, int | None]]:
    """The one call into the collection layer: snapshots with each namespace's SO_NETNS_COOKIE
    (None when unknown), owners attributed.

    Raises:
        LoopscopeError: the socket source failed.
    """
    from loopscope.backends.linux.bpf.sockops import netns_cookie_of_current
    from loopscope.backends.linux.netns import resolve_netns, run_in_netns

    try:
        from loopscope.collect import take_all_snapshots, take_snapshot
    except ImportError:  # TEMP while collect.py becomes a package
        from loopscope.collect._old import take_all_snapshots, take_snapshot  # type: ignore

    if options.all_netns:
        snaps = take_all_snapshots(source=options.source)
    else:
        snaps = [take_snapshot(source=options.source)]
    out: list[tuple[Snapshot, int | None]] = []
    here = netns_cookie_of_current()
    host = os.stat("/proc/self/ns/net")
    for snap in snaps:
        if (snap.netns.dev, snap.netns.ino) == (host.st_dev, host.st_ino):
            out.append((snap, here))
            continue
        cookie: int | None = None
        with contextlib.suppress(LoopscopeError, OSError):
            path = _netns_path(snap)
            if path is not None:
                cookie = run_in_netns(resolve_netns(path), netns_cookie_of_current)
        out.append((snap, cookie))
    return out


def _netns_path(snap: Snapshot) -> str | None:
    """An nsfs path for a snapshot's namespace: its /run/netns name, or a process inside it."""
    label = snap.netns_label
    if label.startswith("/"):
        return label
    if os.path.exists(f"/run/netns/{label}"):
        return f"/run/netns/{label}"
    for key, proc in snap.processes.items():
        if proc.netns == snap.netns:
            return f"/proc/{key.pid}/ns/net"
    return None


def server_apps(
    snaps: Sequence[tuple[Snapshot, int | None]],
) -> dict[tuple[int, object, int], str]:
    """``(netns cookie, unmapped address or None for wildcard, port) -> listener app`` for TCP."""
    out: dict[tuple[int, object, int], str] = {}
    for snap, cookie in snaps:
        if cookie is None:
            continue
        for lst in find_listeners(snap):
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
        try:
            snaps = read_snapshots(self.options)
        except LoopscopeError as exc:
            log.warning("snapshot failed: %s", exc)
            snaps = []
            gaps += 1
        gaps += sum(len(s.gaps) for s, _ in snaps)
        families += snapshot_families([s for s, _ in snaps])
        counts: list[ConnectionCount] = []
        map_full = 0
        if self.counter is not None:
            counts = self.counter.read()
            map_full = self.counter.map_full()
            self.totals.add(counts, server_apps(snaps))
        usage = os.times()
        health = Health(
            connection_source="ebpf_counter" if self.counter is not None else "none",
            connection_source_reason=self.counter_reason,
            map_full=map_full,
            map_entries=len(counts),
            map_capacity=self.counter.max_entries if self.counter is not None else 0,
            scrape_duration_s=self._last_duration_s,
            cpu_s=usage.user + usage.system,
            gaps=gaps,
        )
        families += traffic_families(self.totals, health)
        self._last_duration_s = time.perf_counter() - t0
        return families

"""A watch window as time series: connections/s per edge and per app, accept-queue fill per listener,
and the time each finding first shows (pure).

Feeds ``watch --plot`` and the sparklines of ``loopscope top``. Times are seconds from the window start.
A connection counts in the bucket of its ``connect()`` (eBPF) or of its first close (destroy events);
connections already open when the window started (seen in snapshots only) have no open time and are left
out of the rates. The open times per edge come from the report
(:attr:`~loopscope.analysis.watch.report.WatchReport.edge_opens_ns`: the edge of a connection is the one
:func:`~loopscope.analysis.watch.report.summarize_watch` counts it in), so the series add up to the
report's counts and the window is not joined a second time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loopscope.analysis.apps import AppKey
from loopscope.analysis.watch.connections import find_window_apps
from loopscope.analysis.watch.model import WatchData
from loopscope.analysis.watch.report import WatchReport, summarize_watch
from loopscope.model import Finding

__all__ = [
    "AppSeries",
    "EdgeSeries",
    "FindingMark",
    "QueueSeries",
    "Timeline",
    "bucket_rates",
    "build_timeline",
    "pick_bucket_s",
]

_NICE_BUCKETS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSeries:
    """Connections/s on one call-graph edge."""

    client_app: AppKey
    """Client app identity."""
    server_app: AppKey
    """Server app identity."""
    port: int
    """Server port."""
    label: str
    """``client -> server:port``."""
    self_call: bool
    """Client app is the server app."""
    rates_per_s: tuple[float, ...]
    """Connections opened per second, one per bucket of :attr:`Timeline.starts_s`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppSeries:
    """Inbound connections/s of one app, split into external and self-calls."""

    key: AppKey
    """App identity."""
    name: str
    """App label."""
    external_per_s: tuple[float, ...]
    """External connections per second, per bucket."""
    self_per_s: tuple[float, ...]
    """Self-call connections per second, per bucket."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSeries:
    """Accept queue of one listener at each snapshot."""

    listener: str
    """``app addr:port`` (as :class:`~loopscope.analysis.watch.report.ListenerPressure`)."""
    port: int
    """Port."""
    backlog: int | None
    """Accept queue limit (last seen)."""
    times_s: tuple[float, ...]
    """Snapshot times, seconds from window start."""
    queue: tuple[int, ...]
    """Accept queue length at each time."""

    @property
    def fill_pct(self) -> tuple[float, ...]:
        """Queue as percent of the backlog (0 when the backlog is unknown or 0)."""
        b = self.backlog or 0
        return tuple(100.0 * q / b if b else 0.0 for q in self.queue)


@dataclass(frozen=True, slots=True, kw_only=True)
class FindingMark:
    """Where a finding first shows on the time axis."""

    code: str
    """Finding code."""
    subject: str
    """Finding subject."""
    at_s: float
    """Seconds from window start (the window end when nothing in the data dates it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """The window as series."""

    window_s: float
    """Window length, seconds."""
    bucket_s: float
    """Bucket width, seconds."""
    starts_s: tuple[float, ...]
    """Bucket starts, seconds from window start."""
    edges: tuple[EdgeSeries, ...]
    """The busiest edges (self-calls first among equals), at most ``top_edges``."""
    apps: tuple[AppSeries, ...]
    """Every app with a listener, in report order."""
    listeners: tuple[QueueSeries, ...]
    """Accept queue per listener, by port."""
    marks: tuple[FindingMark, ...]
    """One mark per finding, in the order given."""


def pick_bucket_s(window_s: float, max_buckets: int = 120) -> float:
    """The smallest of 0.5, 1, 2, 5, 10, 15, 30, 60... seconds that cuts the window in at most
    ``max_buckets``.

    Example: ``pick_bucket_s(10.0) == 0.5``; ``pick_bucket_s(300.0) == 5.0``.
    """
    for b in _NICE_BUCKETS_S:
        if window_s / b <= max_buckets:
            return b
    return math.ceil(window_s / max_buckets)


def bucket_rates(
    times_ns: Iterable[int], start_ns: int, end_ns: int, bucket_s: float
) -> tuple[float, ...]:
    """Events per second in consecutive buckets of ``bucket_s`` from ``start_ns`` to ``end_ns``; the last
    bucket may be shorter and is divided by its own length. Times outside the window are dropped.

    Example: times at 0.1, 0.2 and 1.5 s in a 2 s window with 1 s buckets -> ``(2.0, 1.0)``.

    Raises:
        ValueError: ``bucket_s`` is not positive.
    """
    if bucket_s <= 0:
        raise ValueError("bucket_s must be positive")
    span_ns = max(end_ns - start_ns, 0)
    width_ns = int(bucket_s * 1e9)
    n = max(1, math.ceil(span_ns / width_ns)) if span_ns else 1
    counts = [0] * n
    for t in times_ns:
        if t < start_ns or t > end_ns:
            continue
        counts[min((t - start_ns) // width_ns, n - 1)] += 1
    out = []
    for k, c in enumerate(counts):
        length_s = (min(width_ns, span_ns - k * width_ns) if span_ns else width_ns) / 1e9
        out.append(c / length_s if length_s > 0 else 0.0)
    return tuple(out)


def _first_at(times: Iterable[float], default: float) -> float:
    return min(times, default=default)


def build_timeline(
    data: WatchData,
    report: WatchReport,
    findings: Sequence[Finding] = (),
    *,
    bucket_s: float | None = None,
    top_edges: int = 6,
) -> Timeline:
    """Series of one window: see the module docstring.

    Args:
        data: the window's events and samples.
        report: :func:`~loopscope.analysis.watch.report.summarize_watch` of ``data`` (possibly filtered:
            only its apps and edges are drawn).
        findings: :func:`~loopscope.analysis.watch.findings.check_watch` of ``report``, to mark.
        bucket_s: bucket width (default :func:`pick_bucket_s` of the window).
        top_edges: how many edges to keep, busiest first.
    """
    start, end = data.started_ns, max(data.ended_ns, data.started_ns)
    window_s = (end - start) / 1e9
    width = bucket_s if bucket_s is not None else pick_bucket_s(window_s)
    edge_times = report.edge_opens_ns
    if edge_times is None:  # a report built elsewhere: join the window again
        edge_times = summarize_watch(data).edge_opens_ns or {}
    ext_times: dict[AppKey, list[int]] = defaultdict(list)
    self_times: dict[AppKey, list[int]] = defaultdict(list)
    for (client_key, server_key, _port), times in edge_times.items():
        (self_times if client_key == server_key else ext_times)[server_key].extend(times)

    def rates(times: list[int]) -> tuple[float, ...]:
        return bucket_rates(times, start, end, width)

    wanted = sorted(
        report.edges, key=lambda e: (-e.connections, not e.self_call, e.port, e.client)
    )[:top_edges]
    edges = tuple(
        EdgeSeries(
            client_app=e.client_app,
            server_app=e.server_app,
            port=e.port,
            label=f"{e.client} -> {e.server}:{e.port}",
            self_call=e.self_call,
            rates_per_s=rates(edge_times.get((e.client_app, e.server_app, e.port), [])),
        )
        for e in wanted
    )
    app_series = tuple(
        AppSeries(
            key=a.key,
            name=a.name,
            external_per_s=rates(ext_times.get(a.key, [])),
            self_per_s=rates(self_times.get(a.key, [])),
        )
        for a in report.apps
    )
    queues = _queues(data, report)
    n = len(rates([]))
    starts = tuple(round(k * width, 3) for k in range(n))
    marks = tuple(_mark(f, report, queues, self_times, data, window_s) for f in findings)
    return Timeline(
        window_s=window_s,
        bucket_s=width,
        starts_s=starts,
        edges=edges,
        apps=app_series,
        listeners=queues,
        marks=marks,
    )


def _queues(data: WatchData, report: WatchReport) -> tuple[QueueSeries, ...]:
    shown = {lp.port for lp in report.listeners}
    by_port = {p: a for a in find_window_apps(data) for p in a.ports}
    series: dict[str, list[tuple[float, int, int | None]]] = defaultdict(list)
    ports: dict[str, int] = {}
    for s in data.samples:
        for lst in s.listeners:
            if lst.local.port not in shown:
                continue
            app = by_port.get(lst.local.port)
            key = f"{app.label if app else '?'} {lst.local}"
            ports[key] = lst.local.port
            series[key].append(
                ((s.at_ns - data.started_ns) / 1e9, lst.accept_queue or 0, lst.backlog)
            )
    return tuple(
        sorted(
            (
                QueueSeries(
                    listener=key,
                    port=ports[key],
                    backlog=pts[-1][2],
                    times_s=tuple(round(max(p[0], 0.0), 3) for p in pts),
                    queue=tuple(p[1] for p in pts),
                )
                for key, pts in series.items()
            ),
            key=lambda q: (q.port, q.listener),
        )
    )


def _mark(
    f: Finding,
    report: WatchReport,
    queues: tuple[QueueSeries, ...],
    self_times: dict[AppKey, list[int]],
    data: WatchData,
    window_s: float,
) -> FindingMark:
    """Date a finding by its first evidence: the first self-call of its app, the first full queue of its
    listener, the first sample with its ephemeral count at the maximum; else the window end."""
    at = window_s
    app = next((a for a in report.apps if f.subject.split(" ")[0] == a.name), None)
    queue = next((q for q in queues if q.listener == f.subject), None)
    if f.code.startswith("SELF_CALL") and app is not None:
        at = _first_at(((t - data.started_ns) / 1e9 for t in self_times.get(app.key, [])), at)
    elif queue is not None and queue.backlog:
        at = _first_at(
            (t for t, q in zip(queue.times_s, queue.queue, strict=True) if q >= queue.backlog), at
        )
    elif f.subject in report.max_ephemeral:
        peak = report.max_ephemeral[f.subject]
        at = _first_at(
            (
                (s.at_ns - data.started_ns) / 1e9
                for s in data.samples
                if s.ephemeral_in_use.get(f.subject) == peak
            ),
            at,
        )
    return FindingMark(code=f.code, subject=f.subject, at_s=round(max(at, 0.0), 3))

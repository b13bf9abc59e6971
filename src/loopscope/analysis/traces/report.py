"""The traces report (pure): per service and per entry endpoint, self-calls, amplification, waiting time.

Built from :class:`~loopscope.model.spans.SpanRecord` values by :func:`summarize_traces`; the walk itself
(what counts as an entry request and a self-call) is in :mod:`loopscope.analysis.traces.walk`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from loopscope.analysis.stats import percentile
from loopscope.analysis.traces.walk import EntryRequest, SpanRow, WalkResult, span_row, walk_rows
from loopscope.model import Gap
from loopscope.model.spans import SpanRecord

__all__ = [
    "EndpointStats",
    "ServiceEdge",
    "ServiceStats",
    "TraceExample",
    "TracesReport",
    "summarize_span_rows",
    "summarize_traces",
]

WORST = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointStats:
    """One entry endpoint of one service."""

    service: str
    """Service serving it."""
    endpoint: str
    """``GET /order`` (method and ``http.route``, else the span name)."""
    requests: int
    """Entry requests seen (sampled traces only)."""
    estimated_requests: float | None
    """``requests / sample_ratio`` when a head-sampling ratio was given, else None."""
    requests_with_self_calls: int
    """Entry requests that made at least one self-call."""
    self_calls: int
    """Self-calls made on behalf of these requests (internal requests)."""
    amplification: float
    """Internal requests per external request: ``self_calls / requests``."""
    internal_endpoints: tuple[tuple[str, int], ...]
    """Internal endpoints called -> calls, most called first."""
    other_calls: int
    """Calls to other services (or untraced peers)."""
    callees: tuple[tuple[str, int], ...]
    """Other service (or ``host:port``) -> calls."""
    waiting_share: float
    """Share (0-1) of the entry requests' total duration spent waiting on their own self-calls: per
    request the union of self-call intervals clipped to the request, summed, over the summed durations."""
    p50_ms: float | None
    """Median entry latency, milliseconds."""
    p99_ms: float | None
    """99th percentile entry latency, milliseconds."""
    p50_with_self_ms: float | None
    """Median latency of the requests that made self-calls."""
    p99_with_self_ms: float | None
    """99th percentile latency of the requests that made self-calls."""
    p50_without_self_ms: float | None
    """Median latency of the requests that made none."""
    p99_without_self_ms: float | None
    """99th percentile latency of the requests that made none."""

    @property
    def call_summary(self) -> str:
        """``GET /order -> GET /price x1, GET /stock x1`` (calls per request)."""
        if not self.internal_endpoints or not self.requests:
            return self.endpoint
        calls = ", ".join(f"{e} x{n / self.requests:.3g}" for e, n in self.internal_endpoints)
        return f"{self.endpoint} -> {calls}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStats:
    """One service, all its entry endpoints together."""

    service: str
    """``service.name``."""
    requests: int
    """Entry (external) requests."""
    self_calls: int
    """Self-calls (internal requests)."""
    amplification: float
    """Internal requests per external request."""
    other_calls: int
    """Calls to other services."""
    waiting_share: float
    """Share (0-1) of entry request time spent waiting on its own self-calls."""
    ports: tuple[int, ...]
    """Ports its server spans came in on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceExample:
    """One entry request worth a look, with its trace id."""

    trace_id: str
    """Hex trace id, to open in a trace viewer."""
    service: str
    """Service."""
    endpoint: str
    """Entry endpoint."""
    self_calls: int
    """Self-calls it made."""
    waiting_share: float
    """Share (0-1) of its duration spent waiting on them."""
    duration_ms: float
    """Its latency, milliseconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEdge:
    """Calls from one service to another (or to itself) seen as CLIENT spans."""

    client: str
    """Calling service."""
    server: str
    """Called service, or ``host:port`` of an untraced peer."""
    calls: int
    """CLIENT spans."""
    self_call: bool
    """Client and server are the same service."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TracesReport:
    """What the spans say about self-calls."""

    spans: int
    """Spans read."""
    traces: int
    """Distinct traces."""
    window_s: float
    """From the earliest span start to the latest span end, seconds."""
    sample_ratio: float | None
    """Head-sampling ratio the user declared (0-1], or None (all traces assumed kept)."""
    services: tuple[ServiceStats, ...]
    """Per service, most self-calls first."""
    endpoints: tuple[EndpointStats, ...]
    """Per (service, entry endpoint), most self-calls first."""
    edges: tuple[ServiceEdge, ...]
    """Service graph."""
    worst_by_self_calls: tuple[TraceExample, ...]
    """Entry requests with the most self-calls."""
    worst_by_waiting: tuple[TraceExample, ...]
    """Entry requests with the largest waiting share."""
    gaps: tuple[Gap, ...]
    """What the spans could not tell, and why."""


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


def _pcts(durations: list[int]) -> tuple[float | None, float | None]:
    if not durations:
        return None, None
    durations.sort()
    return _ms(percentile(durations, 50)), _ms(percentile(durations, 99))


def _endpoint(
    key: tuple[str, str], group: list[EntryRequest], ratio: float | None
) -> tuple[EndpointStats, int, int]:
    """The stats of one entry endpoint, with its summed waiting and request time (ns)."""
    internal: dict[str, int] = {}
    other: dict[str, int] = {}
    with_self: list[int] = []
    without: list[int] = []
    waiting = total = self_calls = 0
    for e in group:
        if e.internal:
            for name, n in e.internal.items():
                internal[name] = internal.get(name, 0) + n
        if e.other:
            for name, n in e.other.items():
                other[name] = other.get(name, 0) + n
        duration = e.end_ns - e.start_ns
        if duration < 0:
            duration = 0
        if e.self_calls:
            self_calls += e.self_calls
            with_self.append(duration)
        else:
            without.append(duration)
        waiting += e.waiting_ns
        total += duration
    p50, p99 = _pcts(with_self + without)
    p50_w, p99_w = _pcts(with_self)
    p50_wo, p99_wo = _pcts(without)
    stats = EndpointStats(
        service=key[0],
        endpoint=key[1],
        requests=len(group),
        estimated_requests=len(group) / ratio if ratio else None,
        requests_with_self_calls=len(with_self),
        self_calls=self_calls,
        amplification=self_calls / len(group),
        internal_endpoints=tuple(sorted(internal.items(), key=lambda kv: (-kv[1], kv[0]))),
        other_calls=sum(other.values()),
        callees=tuple(sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))),
        waiting_share=waiting / total if total else 0.0,
        p50_ms=p50,
        p99_ms=p99,
        p50_with_self_ms=p50_w,
        p99_with_self_ms=p99_w,
        p50_without_self_ms=p50_wo,
        p99_without_self_ms=p99_wo,
    )
    return stats, waiting, total


def _example(e: EntryRequest) -> TraceExample:
    return TraceExample(
        trace_id=e.trace_id,
        service=e.service,
        endpoint=e.endpoint,
        self_calls=e.self_calls,
        waiting_share=e.waiting_ns / e.duration_ns if e.duration_ns else 0.0,
        duration_ms=e.duration_ns / 1e6,
    )


def _gaps(walk: WalkResult, ratio: float | None) -> list[Gap]:
    gaps = []
    if walk.missing_parent:
        gaps.append(
            Gap(
                what=f"parent of {walk.missing_parent} spans",
                reason="the parent span is not in the input (not exported yet, lost, or from an "
                "untraced caller); each such span was walked as the root of a fragment, so a self-call "
                "whose client span is missing counts as an entry request",
                count=walk.missing_parent,
            )
        )
    if walk.in_cycle:
        gaps.append(
            Gap(
                what=f"{walk.in_cycle} spans in parent cycles",
                reason="their parent chain loops back on itself (corrupt ids); they were ignored",
                count=walk.in_cycle,
            )
        )
    if walk.duplicate:
        gaps.append(
            Gap(
                what=f"{walk.duplicate} duplicate spans",
                reason="the same trace and span id appeared again (exported twice?); the first was kept",
                count=walk.duplicate,
            )
        )
    if walk.skewed:
        gaps.append(
            Gap(
                what=f"timing of {walk.skewed} spans",
                reason=f"they start before or end after their parent by up to {walk.max_skew_ns / 1e6:.1f} ms: "
                "clocks of different hosts disagree; waiting shares near those spans are approximate",
                count=walk.skewed,
            )
        )
    if walk.negative:
        gaps.append(
            Gap(
                what=f"duration of {walk.negative} spans",
                reason="they end before they start; counted with duration 0",
                count=walk.negative,
            )
        )
    if walk.peer_matched:
        gaps.append(
            Gap(
                what=f"server side of {walk.peer_matched} self-calls",
                reason="the callee left no span (untraced, lost or sampled out); matched by peer port "
                "to a port the service serves on",
                count=walk.peer_matched,
            )
        )
    if walk.server_only:
        gaps.append(
            Gap(
                what=f"client side of {walk.server_only} self-calls",
                reason="the server span's parent is not a CLIENT span: the HTTP client library is not "
                "instrumented, so the waiting time of these calls is unknown",
                count=walk.server_only,
            )
        )
    if ratio is not None and ratio < 1:
        gaps.append(
            Gap(
                what="totals under head sampling",
                reason=f"counts are of sampled traces; with ratio {ratio:g} estimated requests = count / "
                f"{ratio:g}. Ratios (amplification, waiting share, percentiles) hold for head sampling "
                "(whole traces kept); tail sampling keeps slow or failed traces and biases them",
            )
        )
    return gaps


def summarize_traces(
    spans: Iterable[SpanRecord], *, sample_ratio: float | None = None
) -> TracesReport:
    """Per service and per entry endpoint: requests, self-calls, amplification, waiting share, latency.

    Args:
        spans: spans of any number of traces, any order, any mix of services.
        sample_ratio: the head-sampling ratio (0-1] the traces were kept with, when known; totals are
            then also given scaled (``estimated_requests``).

    Returns:
        The report; everything it could not tell is in ``gaps``.

    Example: 20 traces of ``GET /seq`` each making two sequential self-calls give an EndpointStats with
    ``requests == 20``, ``self_calls == 40``, ``amplification == 2.0``.
    """
    return summarize_span_rows(map(span_row, spans), sample_ratio=sample_ratio)


def summarize_span_rows(
    rows: Iterable[SpanRow], *, sample_ratio: float | None = None
) -> TracesReport:
    """:func:`summarize_traces` of :data:`~loopscope.analysis.traces.walk.SpanRow` tuples, what the
    file reader of ``loopscope traces`` builds instead of records (same report as of the records)."""
    walk = walk_rows(rows)
    groups: dict[tuple[str, str], list[EntryRequest]] = {}
    for e in walk.entries:
        key = (e.service, e.endpoint)
        group = groups.get(key)
        if group is None:
            groups[key] = [e]
        else:
            group.append(e)
    per_endpoint = [_endpoint(k, g, sample_ratio) for k, g in groups.items()]
    endpoints = sorted(
        (stats for stats, _, _ in per_endpoint),
        key=lambda s: (-s.self_calls, -s.requests, s.service, s.endpoint),
    )
    # per service: the integer sums of its endpoints' (requests, self-calls, other calls, waiting, time)
    sums: dict[str, list[int]] = {}
    for stats, waiting, total in per_endpoint:
        acc = sums.setdefault(stats.service, [0, 0, 0, 0, 0])
        acc[0] += stats.requests
        acc[1] += stats.self_calls
        acc[2] += stats.other_calls
        acc[3] += waiting
        acc[4] += total
    services = [
        ServiceStats(
            service=name,
            requests=requests,
            self_calls=self_calls,
            amplification=self_calls / requests,
            other_calls=other_calls,
            waiting_share=waiting / total if total else 0.0,
            ports=tuple(sorted(walk.ports.get(name, ()))),
        )
        for name, (requests, self_calls, other_calls, waiting, total) in sums.items()
    ]
    services.sort(key=lambda s: (-s.self_calls, -s.requests, s.service))
    with_self = [e for e in walk.entries if e.self_calls]
    # nsmallest(n, ...) is sorted(...)[:n], ties in input order, without sorting every request
    worst_count = heapq.nsmallest(
        WORST, with_self, key=lambda e: (-e.self_calls, -e.waiting_ns, e.trace_id)
    )
    worst_wait = heapq.nsmallest(
        WORST,
        with_self,
        key=lambda e: (-(e.waiting_ns / e.duration_ns if e.duration_ns else 0.0), e.trace_id),
    )
    edges = sorted(
        (
            ServiceEdge(client=c, server=s, calls=n, self_call=self_call)
            for (c, s, self_call), n in walk.edges.items()
        ),
        key=lambda e: (-e.calls, e.client, e.server),
    )
    lo, hi = walk.window_start_ns, walk.window_end_ns
    return TracesReport(
        spans=walk.spans,
        traces=walk.traces,
        window_s=(hi - lo) / 1e9 if lo is not None and hi is not None and hi > lo else 0.0,
        sample_ratio=sample_ratio,
        services=tuple(services),
        endpoints=tuple(endpoints),
        edges=tuple(edges),
        worst_by_self_calls=tuple(_example(e) for e in worst_count[:WORST]),
        worst_by_waiting=tuple(_example(e) for e in worst_wait[:WORST]),
        gaps=tuple(_gaps(walk, sample_ratio)),
    )

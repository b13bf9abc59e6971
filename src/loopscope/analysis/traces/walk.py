"""Walk span trees (pure): entry requests, self-calls, calls to other services, and what is broken.

An **entry request** of service S is a SERVER span of S whose nearest SERVER ancestor is not of S (or that
has none): a request that came to S from outside. A **self-call** is a CLIENT span of S, inside an entry
request of S, whose server side is S again: matched by its child SERVER span, or by its peer port when
the callee left no span (a port S serves on, at a loopback or unknown address). Nested self-calls (a
self-call whose handler calls itself again) are attributed to the same entry request.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from loopscope.analysis.traces.stats import clipped_union_ns
from loopscope.model.spans import SpanKind, SpanRecord

__all__ = [
    "SKEW_TOLERANCE_NS",
    "EntryRequest",
    "WalkResult",
    "endpoint_of",
    "is_local_address",
    "walk_spans",
]

SKEW_TOLERANCE_NS = 1_000_000
"""A child may start before / end after its parent by this much before it counts as clock skew (1 ms)."""


def endpoint_of(span: SpanRecord) -> str:
    """The endpoint a span stands for: ``METHOD route`` for server spans with ``http.route``, else the
    path of a client span's URL, else the span name.

    Example: a server span with method GET and route ``/order`` -> ``"GET /order"``; a client span
    ``GET`` to ``http://127.0.0.1:8000/price?x=1`` -> ``"GET /price"``.
    """
    if span.route:
        return f"{span.method} {span.route}" if span.method else span.route
    if span.kind is SpanKind.CLIENT and span.target:
        path = span.target.split("?", 1)[0]
        return f"{span.method} {path}" if span.method else path
    return span.name


def is_local_address(address: str | None) -> bool:
    """True for loopback addresses, ``localhost`` and unknown (None) peers.

    Example: ``is_local_address("127.0.0.1") is True``; ``is_local_address("10.0.0.5") is False``.
    """
    if address is None or address in ("localhost", "localhost.localdomain", "0.0.0.0", "::"):
        return True
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


@dataclass(slots=True)
class EntryRequest:
    """One entry request and what it caused (mutable while walking, then read only)."""

    trace_id: str
    """The trace it belongs to."""
    service: str
    """Service that served it."""
    endpoint: str
    """``GET /order``."""
    start_ns: int
    """Start of the entry SERVER span."""
    end_ns: int
    """End of the entry SERVER span."""
    self_calls: int = 0
    """Self-call CLIENT spans (plus self-call SERVER spans whose client left no span)."""
    self_intervals: list[tuple[int, int]] = field(default_factory=list)
    """(start_ns, end_ns) of each self-call CLIENT span."""
    internal: dict[str, int] = field(default_factory=dict)
    """Internal endpoint called -> count (a plain dict: a Counter per entry request costs ~1 us each)."""
    other: dict[str, int] = field(default_factory=dict)
    """Other service (or untraced ``host:port``) called -> count."""
    waiting_ns: int = 0
    """Union of self-call intervals clipped to the entry span, set by :func:`walk_spans`."""

    @property
    def duration_ns(self) -> int:
        """Length of the entry span, never negative."""
        return max(0, self.end_ns - self.start_ns)


@dataclass(slots=True)
class WalkResult:
    """Everything :func:`walk_spans` found."""

    spans: int = 0
    """Spans read."""
    traces: int = 0
    """Distinct trace ids."""
    entries: list[EntryRequest] = field(default_factory=list)
    """Every entry request, in trace order."""
    edges: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    """(client service, callee, self-call) -> CLIENT spans; callee is a service or ``host:port``."""
    ports: dict[str, set[int]] = field(default_factory=dict)
    """Service -> ports its SERVER spans came in on."""
    missing_parent: int = 0
    """Spans whose parent id is not in their trace (walked as roots of a fragment)."""
    duplicate: int = 0
    """Spans whose (trace id, span id) was seen before (ignored)."""
    in_cycle: int = 0
    """Spans unreachable from any root: their parent chain loops (ignored)."""
    skewed: int = 0
    """Spans starting before or ending after their parent by more than :data:`SKEW_TOLERANCE_NS`."""
    max_skew_ns: int = 0
    """Largest such overhang."""
    negative: int = 0
    """Spans that end before they start."""
    peer_matched: int = 0
    """Self-calls matched by peer port because the callee left no span (untraced, lost or sampled out)."""
    server_only: int = 0
    """Self-call SERVER spans whose parent is not a CLIENT span (the client library is not traced)."""
    window_start_ns: int | None = None
    """Earliest span start."""
    window_end_ns: int | None = None
    """Latest span end."""


def _group(spans: Iterable[SpanRecord], result: WalkResult) -> dict[str, dict[str, SpanRecord]]:
    traces: dict[str, dict[str, SpanRecord]] = {}
    lo: int | None = None
    hi: int | None = None
    for span in spans:
        result.spans += 1
        by_id = traces.get(span.trace_id)
        if by_id is None:
            by_id = traces[span.trace_id] = {}
        if span.span_id in by_id:
            result.duplicate += 1
            continue
        by_id[span.span_id] = span
        if span.end_ns < span.start_ns:
            result.negative += 1
        if lo is None or span.start_ns < lo:
            lo = span.start_ns
        if hi is None or span.end_ns > hi:
            hi = span.end_ns
        if span.kind is SpanKind.SERVER and span.local_port is not None:
            result.ports.setdefault(span.service, set()).add(span.local_port)
    result.window_start_ns, result.window_end_ns = lo, hi
    result.traces = len(traces)
    return traces


def _callee(
    client: SpanRecord, children: list[SpanRecord], ports: dict[str, set[int]]
) -> tuple[str, SpanRecord | None, bool]:
    """(callee service or host:port, the callee's SERVER span if traced, matched by peer)."""
    for child in children:
        if child.kind is SpanKind.SERVER:
            return child.service, child, False
    port = client.peer_port
    if port is not None:
        if port in ports.get(client.service, ()) and is_local_address(client.peer_address):
            return client.service, None, True
        for service, service_ports in ports.items():
            if port in service_ports and is_local_address(client.peer_address):
                return service, None, True
    return f"{client.peer_address or '?'}:{port if port is not None else '?'}", None, False


def _skew(parent: SpanRecord, child: SpanRecord) -> int:
    return max(parent.start_ns - child.start_ns, child.end_ns - parent.end_ns, 0)


def _walk_trace(by_id: dict[str, SpanRecord], result: WalkResult) -> None:
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for span in by_id.values():
        parent_id = span.parent_id
        if parent_id is None:
            roots.append(span)
        elif parent_id in by_id:
            children.setdefault(parent_id, []).append(
                span
            )  # its own parent: a cycle, never reached
        else:
            result.missing_parent += 1
            roots.append(span)
    ports = result.ports
    seen = 0
    # stack of (span, its parent span, current entry, service of the nearest SERVER ancestor)
    stack: list[tuple[SpanRecord, SpanRecord | None, EntryRequest | None, str | None]] = [
        (r, None, None, None) for r in reversed(roots)
    ]
    while stack:
        span, parent, entry, server_service = stack.pop()
        seen += 1
        if parent is not None:
            skew = _skew(parent, span)
            if skew > SKEW_TOLERANCE_NS:
                result.skewed += 1
                result.max_skew_ns = max(result.max_skew_ns, skew)
        kind = span.kind
        if kind is SpanKind.SERVER:
            if entry is not None and server_service == span.service == entry.service:
                if parent is None or parent.kind is not SpanKind.CLIENT:
                    entry.self_calls += 1  # the client library left no span
                    name = endpoint_of(span)
                    entry.internal[name] = entry.internal.get(name, 0) + 1
                    result.server_only += 1
            else:
                entry = EntryRequest(
                    trace_id=span.trace_id,
                    service=span.service,
                    endpoint=endpoint_of(span),
                    start_ns=span.start_ns,
                    end_ns=span.end_ns,
                )
                result.entries.append(entry)
            server_service = span.service
        kids = children.get(span.span_id, ())
        if kind is SpanKind.CLIENT:
            callee, callee_span, by_peer = _callee(span, list(kids), ports)
            is_self = callee == span.service
            result.edges[(span.service, callee, is_self)] += 1
            if entry is not None and entry.service == span.service:
                if is_self:
                    entry.self_calls += 1
                    entry.self_intervals.append((span.start_ns, span.end_ns))
                    name = endpoint_of(callee_span) if callee_span else endpoint_of(span)
                    entry.internal[name] = entry.internal.get(name, 0) + 1
                    if by_peer:
                        result.peer_matched += 1
                else:
                    entry.other[callee] = entry.other.get(callee, 0) + 1
        for kid in reversed(kids):
            stack.append((kid, span, entry, server_service))
    result.in_cycle += len(by_id) - seen


def walk_spans(spans: Iterable[SpanRecord]) -> WalkResult:
    """Group spans by trace, walk each tree from its roots, and tally entry requests and calls.

    Args:
        spans: spans of any number of traces, in any order.

    Returns:
        The entry requests with their self-calls (count, intervals, internal endpoints, waiting time),
        the service call edges, and counts of what was broken (missing parents, duplicates, cycles,
        clock skew, negative durations).

    Example: spans of one trace ``shop GET /order`` (SERVER) -> CLIENT -> ``shop GET /price`` (SERVER)
    give one EntryRequest ``GET /order`` with ``self_calls == 1`` and ``internal == {"GET /price": 1}``.
    """
    result = WalkResult()
    traces = _group(spans, result)
    for by_id in traces.values():
        _walk_trace(by_id, result)
    for entry in result.entries:
        if entry.self_intervals:
            entry.waiting_ns = clipped_union_ns(entry.self_intervals, entry.start_ns, entry.end_ns)
    return result

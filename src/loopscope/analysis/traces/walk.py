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
    "SpanRow",
    "WalkResult",
    "endpoint_from",
    "endpoint_of",
    "is_local_address",
    "span_row",
    "walk_rows",
    "walk_spans",
]

SKEW_TOLERANCE_NS = 1_000_000
"""A child may start before / end after its parent by this much before it counts as clock skew (1 ms)."""


SpanRow = tuple[
    str, str, str | None, str, SpanKind, str, int, int, str | None, int | None, int | None
]
"""The part of a span the walk reads, as a plain tuple (cheaper to build and to read than a SpanRecord;
what the reader of ``loopscope traces FILE`` builds instead of records): ``(trace_id, span_id, parent_id, service, kind, endpoint,
start_ns, end_ns, peer_address, peer_port, local_port)``, each as in
:class:`~loopscope.model.spans.SpanRecord`, ``endpoint`` from :func:`endpoint_of`.
:func:`span_row` makes one from a record."""


def endpoint_from(
    kind: SpanKind, route: str | None, method: str | None, target: str | None
) -> str | None:
    """The endpoint of a span from its HTTP fields, None when it is the span name (see
    :func:`endpoint_of`); readers memoise it with the fields.

    Example: ``endpoint_from(SpanKind.CLIENT, None, "GET", "/price?x=1") == "GET /price"``;
    ``endpoint_from(SpanKind.INTERNAL, None, None, "/x") is None``.
    """
    if route:
        return f"{method} {route}" if method else route
    if kind is SpanKind.CLIENT and target:
        path = target.split("?", 1)[0]
        return f"{method} {path}" if method else path
    return None


def endpoint_of(span: SpanRecord) -> str:
    """The endpoint a span stands for: ``METHOD route`` for server spans with ``http.route``, else the
    path of a client span's URL, else the span name.

    Example: a server span with method GET and route ``/order`` -> ``"GET /order"``; a client span
    ``GET`` to ``http://127.0.0.1:8000/price?x=1`` -> ``"GET /price"``.
    """
    endpoint = endpoint_from(span.kind, span.route, span.method, span.target)
    return span.name if endpoint is None else endpoint


def span_row(span: SpanRecord) -> SpanRow:
    """The :data:`SpanRow` of a record.

    Example: a SERVER span of ``shop`` for route ``/order`` on port 8000 -> ``(trace_id, span_id, None,
    "shop", SpanKind.SERVER, "GET /order", start_ns, end_ns, None, None, 8000)``.
    """
    return (
        span.trace_id,
        span.span_id,
        span.parent_id,
        span.service,
        span.kind,
        endpoint_of(span),
        span.start_ns,
        span.end_ns,
        span.peer_address,
        span.peer_port,
        span.local_port,
    )


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
    return walk_rows(map(span_row, spans))


def _group(rows: Iterable[SpanRow], result: WalkResult) -> dict[str, dict[str, SpanRow]]:
    """Rows by trace id then span id, both in first-seen order; duplicates counted and dropped; the
    ports of each service's SERVER spans."""
    traces: dict[str, dict[str, SpanRow]] = {}
    ports = result.ports
    server = SpanKind.SERVER
    n = duplicate = 0
    for row in rows:
        n += 1
        by_id = traces.get(row[0])
        if by_id is None:
            traces[row[0]] = {row[1]: row}
        elif row[1] in by_id:
            duplicate += 1
            continue
        else:
            by_id[row[1]] = row
        if row[4] is server and row[10] is not None:
            found = ports.get(row[3])
            if found is None:
                ports[row[3]] = {row[10]}
            else:
                found.add(row[10])
    result.spans = n
    result.duplicate = duplicate
    result.traces = len(traces)
    return traces


def walk_rows(rows: Iterable[SpanRow]) -> WalkResult:
    """:func:`walk_spans` of :data:`SpanRow` tuples (same result as of the records they come from).

    One pass groups the rows by trace; each trace is then walked depth first from its roots (spans
    without a parent, or whose parent is not in the trace), children in input order.
    """
    result = WalkResult()
    traces = _group(rows, result)
    ports = result.ports
    entries = result.entries
    calls: dict[tuple[str, str], int] = {}  # (client service, callee) -> CLIENT spans
    server, client = SpanKind.SERVER, SpanKind.CLIENT
    tolerance = SKEW_TOLERANCE_NS
    local: dict[str | None, bool] = {}
    if traces:
        first = next(iter(next(iter(traces.values())).values()))
        lo, hi = first[6], first[7]
    negative = missing = skewed = max_skew = peer_matched = server_only = in_cycle = 0
    for by_id in traces.values():
        children: dict[str, list[SpanRow]] = {}
        roots: list[SpanRow] = []
        for row in by_id.values():
            start, end = row[6], row[7]
            if start < lo:
                lo = start
            if end > hi:
                hi = end
            if end < start:
                negative += 1
            parent_id = row[2]
            if parent_id is None:
                roots.append(row)
            elif parent_id in by_id:  # its own parent: a cycle, never reached
                kids = children.get(parent_id)
                if kids is None:
                    children[parent_id] = [row]
                else:
                    kids.append(row)
            else:
                missing += 1
                roots.append(row)
        seen = 0
        # stack of (span, its parent span, current entry, service of the nearest SERVER ancestor)
        stack: list[tuple[SpanRow, SpanRow | None, EntryRequest | None, str | None]] = [
            (r, None, None, None) for r in reversed(roots)
        ]
        while stack:
            row, parent, entry, server_service = stack.pop()
            seen += 1
            if parent is not None:
                early, late = parent[6] - row[6], row[7] - parent[7]
                if early > tolerance or late > tolerance:
                    skewed += 1
                    skew = early if early > late else late
                    if skew > max_skew:
                        max_skew = skew
            kind = row[4]
            service = row[3]
            if kind is server:
                if entry is not None and server_service == service == entry.service:
                    if parent is None or parent[4] is not client:
                        entry.self_calls += 1  # the client library left no span
                        internal = entry.internal
                        internal[row[5]] = internal.get(row[5], 0) + 1
                        server_only += 1
                else:
                    entry = EntryRequest(row[0], service, row[5], row[6], row[7])
                    entries.append(entry)
                server_service = service
            kids = children.get(row[1])
            if kind is client:
                callee_row: SpanRow | None = None
                if kids:
                    for kid in kids:
                        if kid[4] is server:
                            callee_row = kid
                            break
                by_peer = False
                if callee_row is not None:
                    callee = callee_row[3]
                else:
                    port = row[9]
                    callee = ""
                    if port is not None:
                        address = row[8]
                        is_local = local.get(address)
                        if is_local is None:
                            is_local = local[address] = is_local_address(address)
                        if is_local:
                            if port in ports.get(service, ()):
                                callee, by_peer = service, True
                            else:
                                for other, other_ports in ports.items():
                                    if port in other_ports:
                                        callee, by_peer = other, True
                                        break
                    if not by_peer:
                        callee = f"{row[8] or '?'}:{port if port is not None else '?'}"
                is_self = callee == service
                pair = (service, callee)
                calls[pair] = calls.get(pair, 0) + 1
                if entry is not None and entry.service == service:
                    if is_self:
                        entry.self_calls += 1
                        entry.self_intervals.append((row[6], row[7]))
                        name = callee_row[5] if callee_row is not None else row[5]
                        internal = entry.internal
                        internal[name] = internal.get(name, 0) + 1
                        if by_peer:
                            peer_matched += 1
                    else:
                        other_calls = entry.other
                        other_calls[callee] = other_calls.get(callee, 0) + 1
            if kids:
                for kid in reversed(kids):
                    stack.append((kid, row, entry, server_service))
        in_cycle += len(by_id) - seen
    for entry in entries:
        intervals = entry.self_intervals
        if intervals:
            if len(intervals) == 1:
                a, b = intervals[0]
                a, b = max(a, entry.start_ns), min(b, entry.end_ns)
                entry.waiting_ns = b - a if b > a else 0
            else:
                entry.waiting_ns = clipped_union_ns(intervals, entry.start_ns, entry.end_ns)
    if traces:
        result.window_start_ns, result.window_end_ns = lo, hi
    result.edges.update({(c, s, c == s): n for (c, s), n in calls.items()})
    result.negative = negative
    result.missing_parent = missing
    result.skewed = skewed
    result.max_skew_ns = max_skew
    result.peer_matched = peer_matched
    result.server_only = server_only
    result.in_cycle = in_cycle
    return result

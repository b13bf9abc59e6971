"""Rows, JSON body and DOT graph of a traces report (pure: values in, strings and dicts out)."""

from __future__ import annotations

from typing import Any

from loopscope.analysis.traces.kernel import KernelComparison
from loopscope.analysis.traces.report import EndpointStats, ServiceEdge, TraceExample, TracesReport
from loopscope.model import Finding
from loopscope.render.fields import FieldSpec

__all__ = [
    "CALL_FIELDS",
    "ENDPOINT_FIELDS",
    "KERNEL_FIELDS",
    "SERVICE_FIELDS",
    "WORST_FIELDS",
    "call_rows",
    "endpoint_rows",
    "format_traces_dot",
    "kernel_json",
    "kernel_rows",
    "service_rows",
    "traces_json",
    "worst_rows",
]

SERVICE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("service", "Service", "", "service.name of the spans"),
    FieldSpec("ports", "Ports", "", "ports its SERVER spans came in on"),
    FieldSpec(
        "requests",
        "Requests",
        "",
        "entry (external) requests: SERVER spans not called by the service itself",
        "right",
    ),
    FieldSpec(
        "self_calls",
        "Self-calls",
        "",
        "CLIENT spans of the service whose server side is the service again",
        "right",
    ),
    FieldSpec("amplification", "Ampl.", "", "internal requests per external request", "right"),
    FieldSpec("other_calls", "Other calls", "", "calls to other services", "right"),
    FieldSpec(
        "waiting",
        "Waiting",
        "%",
        "share of entry-request time spent waiting on its own self-calls",
        "right",
    ),
)
ENDPOINT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("service", "Service", "", "service.name"),
    FieldSpec("endpoint", "Endpoint", "", "method and http.route of the entry SERVER span"),
    FieldSpec("requests", "Req", "", "entry requests", "right"),
    FieldSpec("self_calls", "Self", "", "self-calls made for them", "right"),
    FieldSpec("amplification", "Ampl.", "", "self-calls per entry request", "right"),
    FieldSpec(
        "waiting",
        "Wait",
        "%",
        "union of self-call intervals clipped to the request, over its duration",
        "right",
    ),
    FieldSpec("p50", "p50", "ms", "median entry latency, milliseconds", "right"),
    FieldSpec("p99", "p99", "ms", "99th percentile entry latency", "right"),
    FieldSpec(
        "p50_with", "p50 self", "ms", "median latency of requests that made self-calls", "right"
    ),
    FieldSpec(
        "p50_without", "p50 none", "ms", "median latency of requests that made none", "right"
    ),
)
CALL_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("service", "Service", "", "service.name"),
    FieldSpec(
        "calls",
        "Entry endpoint -> internal calls per request",
        "",
        "the internal endpoints each entry request calls, per request",
    ),
    FieldSpec(
        "other", "Other services", "", "calls to other services (or untraced host:port), in total"
    ),
)
WORST_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("trace_id", "Trace id", "", "hex trace id"),
    FieldSpec("endpoint", "Entry endpoint", "", "service and endpoint"),
    FieldSpec("self_calls", "Self-calls", "", "self-calls in this request", "right"),
    FieldSpec("waiting", "Waiting", "%", "share of its duration waiting on them", "right"),
    FieldSpec("duration", "Duration ms", "ms", "its latency", "right"),
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def service_rows(report: TracesReport) -> list[dict[str, str | int]]:
    """One row per service."""
    return [
        {
            "service": s.service,
            "ports": ",".join(map(str, s.ports)),
            "requests": s.requests,
            "self_calls": s.self_calls,
            "amplification": f"{s.amplification:.3g}",
            "other_calls": s.other_calls,
            "waiting": _pct(s.waiting_share),
        }
        for s in report.services
    ]


def endpoint_rows(endpoints: tuple[EndpointStats, ...]) -> list[dict[str, str | int]]:
    """One row per (service, entry endpoint)."""
    return [
        {
            "service": e.service,
            "endpoint": e.endpoint,
            "requests": e.requests,
            "self_calls": e.self_calls,
            "amplification": f"{e.amplification:.3g}",
            "waiting": _pct(e.waiting_share),
            "p50": _ms(e.p50_ms),
            "p99": _ms(e.p99_ms),
            "p50_with": _ms(e.p50_with_self_ms),
            "p50_without": _ms(e.p50_without_self_ms),
        }
        for e in endpoints
    ]


def call_rows(endpoints: tuple[EndpointStats, ...]) -> list[dict[str, str | int]]:
    """One row per entry endpoint that calls anything: ``GET /order -> GET /price x1``, other services."""
    return [
        {
            "service": e.service,
            "calls": e.call_summary,
            "other": ", ".join(f"{name} x{n}" for name, n in e.callees),
        }
        for e in endpoints
        if e.internal_endpoints or e.callees
    ]


def worst_rows(examples: tuple[TraceExample, ...]) -> list[dict[str, str | int]]:
    """One row per example trace."""
    return [
        {
            "trace_id": x.trace_id,
            "endpoint": f"{x.service} {x.endpoint}",
            "self_calls": x.self_calls,
            "waiting": _pct(x.waiting_share),
            "duration": f"{x.duration_ms:.1f}",
        }
        for x in examples
    ]


def traces_json(
    report: TracesReport, findings: list[Finding], source: dict[str, Any]
) -> dict[str, Any]:
    """The ``--json`` body: the report, each endpoint with its ``call_summary``, findings, source."""
    return {
        "source": source,
        "spans": report.spans,
        "traces": report.traces,
        "window_s": round(report.window_s, 6),
        "sample_ratio": report.sample_ratio,
        "services": report.services,
        "endpoints": [{"call_summary": e.call_summary, **_fields(e)} for e in report.endpoints],
        "edges": report.edges,
        "worst_by_self_calls": report.worst_by_self_calls,
        "worst_by_waiting": report.worst_by_waiting,
        "findings": findings,
        "gaps": report.gaps,
    }


def _fields(e: EndpointStats) -> dict[str, Any]:
    return {name: getattr(e, name) for name in e.__dataclass_fields__}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_traces_dot(
    edges: tuple[ServiceEdge, ...], *, title: str = "service graph from traces"
) -> str:
    """A DOT digraph of services; self-calls are red loops.

    Example: ``ServiceEdge(client="shop", server="shop", calls=40, self_call=True)`` gives
    ``"shop" -> "shop" [label="x40", color=red, fontcolor=red, penwidth=2];``.
    """
    lines = [
        "digraph loopscope_traces {",
        f"  label={_quote(title)};",
        "  rankdir=LR;",
        "  node [shape=box, style=rounded, fontname=monospace];",
    ]
    for e in edges:
        attrs = f"label={_quote(f'x{e.calls}')}"
        if e.self_call:
            attrs += ", color=red, fontcolor=red, penwidth=2"
        lines.append(f"  {_quote(e.client)} -> {_quote(e.server)} [{attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


KERNEL_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("service", "Service", "", "traced service on the app's ports"),
    FieldSpec("app", "Kernel app", "", "listener owners seen by the kernel (watch)"),
    FieldSpec("ports", "Ports", "", "listening ports"),
    FieldSpec(
        "kernel_self",
        "Kernel self",
        "",
        "connections (requests with --http) the kernel saw from the app to itself",
        "right",
    ),
    FieldSpec("trace_self", "Span self", "", "self-call CLIENT spans", "right"),
    FieldSpec(
        "kernel_out",
        "Kernel out",
        "",
        "connections to other local listeners (receiver excepted)",
        "right",
    ),
    FieldSpec("trace_out", "Span out", "", "CLIENT spans toward other services", "right"),
    FieldSpec("verdict", "Agree", "", "whether the self-call counts match, and why (or why not)"),
)


def kernel_rows(comparison: KernelComparison) -> list[dict[str, str | int]]:
    """One row per app/service pair of the kernel vs trace table."""
    return [
        {
            "service": r.service or "-",
            "app": r.app or "-",
            "ports": ",".join(map(str, r.ports)) or "-",
            "kernel_self": r.kernel_self_connections
            if r.kernel_self_requests is None
            else f"{r.kernel_self_requests} req / {r.kernel_self_connections} conn",
            "trace_self": r.trace_self_calls,
            "kernel_out": r.kernel_outbound_connections,
            "trace_out": r.trace_other_calls,
            "verdict": ("yes: " if r.agree else "NO: ") + r.cause,
        }
        for r in comparison.rows
    ]


def kernel_json(comparison: KernelComparison) -> dict[str, Any]:
    """The ``kernel`` part of ``loopscope trace --json``."""
    return {
        "client_pid_source": comparison.client_pid_source,
        "sources": comparison.sources,
        "rows": comparison.rows,
    }

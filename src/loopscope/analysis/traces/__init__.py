"""Self-calls in OpenTelemetry traces (pure): entry requests, self-calls, amplification, waiting time."""

from __future__ import annotations

from loopscope.analysis.traces.findings import check_traces
from loopscope.analysis.traces.report import (
    EndpointStats,
    ServiceEdge,
    ServiceStats,
    TraceExample,
    TracesReport,
    summarize_span_rows,
    summarize_traces,
)
from loopscope.analysis.traces.walk import walk_spans

__all__ = [
    "EndpointStats",
    "ServiceEdge",
    "ServiceStats",
    "TraceExample",
    "TracesReport",
    "check_traces",
    "summarize_span_rows",
    "summarize_traces",
    "walk_spans",
]

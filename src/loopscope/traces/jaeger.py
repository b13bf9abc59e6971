"""Jaeger JSON (the query API's ``/api/traces`` answer and the UI's "Download JSON") -> SpanRecord.

Shape: ``{"data": [{"traceID": ..., "spans": [...], "processes": {"p1": {"serviceName": ...}}}]}``;
span times are microseconds (``startTime``, ``duration``), the parent is the ``CHILD_OF`` reference,
the kind is the ``span.kind`` tag. Pure: values in, values out.
"""

from __future__ import annotations

from typing import Any

from loopscope.model.spans import SpanKind, SpanRecord, SpanStatus
from loopscope.traces.attributes import WANTED, http_fields

__all__ = ["decode_jaeger", "looks_like_jaeger"]

_KINDS = {k.value: k for k in SpanKind}


def looks_like_jaeger(doc: Any) -> bool:
    """True for ``{"data": [{"spans": ..., "processes": ...}]}`` or one such trace object."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return any(isinstance(t, dict) and "spans" in t for t in doc["data"]) or not doc["data"]
    return isinstance(doc, dict) and "spans" in doc and "processes" in doc


def _hex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"missing or non-string id {value!r}")
    int(value, 16)
    return value.lower()


def decode_jaeger(doc: Any) -> tuple[list[SpanRecord], int]:
    """Spans of a Jaeger JSON document, and how many spans were skipped as malformed.

    Example: ``{"data": [{"traceID": "ab", "processes": {"p1": {"serviceName": "shop"}}, "spans":
    [{"traceID": "ab", "spanID": "01", "operationName": "GET /order", "startTime": 1000, "duration": 5,
    "processID": "p1", "references": [], "tags": [{"key": "span.kind", "value": "server"}]}]}]}``
    -> one SERVER span of ``shop``, ``start_ns=1_000_000``, ``end_ns=1_005_000``.

    Raises:
        ValueError: not a JSON object.
    """
    if not isinstance(doc, dict):
        raise ValueError("a Jaeger JSON document is an object with data (or spans and processes)")
    traces = doc["data"] if isinstance(doc.get("data"), list) else [doc]
    out: list[SpanRecord] = []
    skipped = 0
    for trace in traces:
        if not isinstance(trace, dict):
            skipped += 1
            continue
        found = trace.get("processes")
        processes: dict[str, Any] = found if isinstance(found, dict) else {}
        spans = trace.get("spans") or []
        if not isinstance(spans, list):
            skipped += 1  # "spans" that is not a list: a malformed trace
            continue
        for span in spans:
            try:
                out.append(_span(span, processes))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
                skipped += 1
    return out, skipped


def _span(span: dict[str, Any], processes: dict[str, Any]) -> SpanRecord:
    tags = {t["key"]: t.get("value") for t in span.get("tags") or () if isinstance(t, dict)}
    process = span.get("process") or processes.get(str(span.get("processID")), {})
    service = str(process.get("serviceName") or "unknown_service")
    kind = _KINDS.get(str(tags.get("span.kind", "")).lower(), SpanKind.INTERNAL)
    parent = span.get("parentSpanID") or None
    for ref in span.get("references") or ():
        if ref.get("refType", "CHILD_OF") == "CHILD_OF" and ref.get("spanID"):
            parent = ref["spanID"]
            break
    status = SpanStatus.UNSET
    if tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR":
        status = SpanStatus.ERROR
    elif tags.get("otel.status_code") == "OK":
        status = SpanStatus.OK
    attrs = {k: v for k, v in tags.items() if k in WANTED}
    route, method, target, peer_address, peer_port, local_port = http_fields(kind, attrs)
    start_us = int(span["startTime"])
    return SpanRecord(
        trace_id=_hex(span["traceID"]),
        span_id=_hex(span["spanID"]),
        parent_id=_hex(parent) if parent else None,
        service=service,
        kind=kind,
        name=str(span.get("operationName", "")),
        route=route,
        method=method,
        target=target,
        start_ns=start_us * 1000,
        end_ns=(start_us + int(span.get("duration", 0))) * 1000,
        peer_address=peer_address,
        peer_port=peer_port,
        local_port=local_port,
        status=status,
    )

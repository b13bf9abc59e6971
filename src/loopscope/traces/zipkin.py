"""Zipkin v2 JSON (``POST /api/v2/spans`` bodies, ``/api/v2/trace/{id}`` answers) -> SpanRecord.

Shape: a list of spans ``{"traceId", "id", "parentId", "kind", "name", "timestamp", "duration",
"localEndpoint": {"serviceName", "ipv4", "port"}, "remoteEndpoint": {...}, "tags": {...}}``, times in
microseconds; ``/api/v2/traces`` answers a list of such lists. B3 "shared" spans (client and server
under one id) are split: the CLIENT half gets the id ``<id>:client`` and becomes the server half's
parent. Pure: values in, values out.
"""

from __future__ import annotations

from typing import Any

from loopscope.model.spans import SpanKind, SpanRecord, SpanStatus
from loopscope.traces.attributes import WANTED, http_fields, to_port

__all__ = ["decode_zipkin", "looks_like_zipkin"]

_KINDS = {
    k.name: k for k in (SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER)
}


def _flat(doc: Any) -> list[Any]:
    if isinstance(doc, list) and doc and all(isinstance(t, list) for t in doc):
        return [s for t in doc for s in t]
    return doc if isinstance(doc, list) else []


def looks_like_zipkin(doc: Any) -> bool:
    """True for a list of span objects with ``traceId`` and ``id`` (or a list of such lists)."""
    spans = _flat(doc)
    return bool(spans) and isinstance(spans[0], dict) and "traceId" in spans[0] and "id" in spans[0]


def _hex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"missing or non-string id {value!r}")
    int(value, 16)
    return value.lower()


def decode_zipkin(doc: Any) -> tuple[list[SpanRecord], int]:
    """Spans of a Zipkin v2 JSON document, and how many were skipped as malformed.

    Example: ``[{"traceId": "ab", "id": "01", "kind": "CLIENT", "name": "get", "timestamp": 1000,
    "duration": 5, "localEndpoint": {"serviceName": "shop"}, "remoteEndpoint": {"ipv4": "127.0.0.1",
    "port": 8000}}]`` -> one CLIENT span of ``shop`` to 127.0.0.1:8000, ``start_ns=1_000_000``.
    """
    raw = _flat(doc)
    out: list[SpanRecord] = []
    skipped = 0
    shared = {
        (s.get("traceId"), s.get("id"))
        for s in raw
        if isinstance(s, dict) and s.get("kind") == "SERVER" and s.get("shared")
    }
    for span in raw:
        try:
            out.append(_span(span, shared))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            skipped += 1
    return out, skipped


def _span(span: dict[str, Any], shared: set[tuple[Any, Any]]) -> SpanRecord:
    kind = _KINDS.get(str(span.get("kind", "")), SpanKind.INTERNAL)
    trace_id, span_id = _hex(span["traceId"]), _hex(span["id"])
    parent = _hex(span["parentId"]) if span.get("parentId") else None
    if (span["traceId"], span["id"]) in shared:
        if kind is SpanKind.CLIENT:
            span_id = f"{span_id}:client"
        elif kind is SpanKind.SERVER:
            parent = f"{span_id}:client"
    tags = span.get("tags") or {}
    attrs = {k: v for k, v in tags.items() if k in WANTED}
    route, method, target, peer_address, peer_port, local_port = http_fields(kind, attrs)
    local = span.get("localEndpoint") or {}
    remote = span.get("remoteEndpoint") or {}
    if kind is SpanKind.CLIENT:
        peer_address = peer_address or remote.get("ipv4") or remote.get("ipv6")
        peer_port = peer_port or to_port(remote.get("port"))
    elif kind is SpanKind.SERVER:
        local_port = local_port or to_port(local.get("port"))
    status = SpanStatus.ERROR if "error" in tags else SpanStatus.UNSET
    if tags.get("otel.status_code") == "OK":
        status = SpanStatus.OK
    start_us = int(span.get("timestamp", 0))
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent,
        service=str(local.get("serviceName") or "unknown_service"),
        kind=kind,
        name=str(span.get("name", "")),
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

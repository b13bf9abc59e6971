"""OTLP traces -> SpanRecord, decoded with the official ``opentelemetry-proto`` package.

Two encodings of the same ``ExportTraceServiceRequest``
(``opentelemetry/proto/collector/trace/v1/trace_service.proto``):

- protobuf, the body of an OTLP/HTTP ``POST /v1/traces`` with ``Content-Type: application/x-protobuf``;
- OTLP/JSON, the body with ``application/json`` and the Collector's file exporter format (one request
  per line). OTLP/JSON differs from protobuf's canonical JSON in one place: trace and span ids are hex,
  not base64, so they are rewritten before ``google.protobuf.json_format.ParseDict``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from loopscope.errors import UsageError
from loopscope.model.spans import SpanKind, SpanRecord, SpanStatus
from loopscope.traces.attributes import WANTED
from loopscope.traces.otlp_json import http_fields_memo, make_span_record

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

__all__ = [
    "INSTALL_HINT",
    "decode_otlp_json",
    "decode_otlp_protobuf",
    "decode_otlp_request",
    "hex_ids_to_base64",
    "request_class",
]

INSTALL_HINT = "reading OTLP needs opentelemetry-proto: pip install 'loopscope[traces]'"

# OTLP Span.SpanKind and Status.StatusCode numbers (trace.proto)
_KIND = {
    0: SpanKind.UNSPECIFIED,
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_STATUS = {0: SpanStatus.UNSET, 1: SpanStatus.OK, 2: SpanStatus.ERROR}
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def request_class() -> type[ExportTraceServiceRequest]:
    """The generated ``ExportTraceServiceRequest`` class.

    Raises:
        UsageError: opentelemetry-proto is not installed (the ``traces`` extra).
    """
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
    except ImportError as exc:
        raise UsageError(INSTALL_HINT) from exc
    return ExportTraceServiceRequest


def _any_value(value: Any) -> object:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    return None


def decode_otlp_request(request: ExportTraceServiceRequest) -> list[SpanRecord]:
    """Every span of a decoded request, with ``service.name`` from its resource.

    Example: a request with resource ``service.name=shop`` and one SERVER span (kind 2) with attributes
    ``http.method=GET``, ``http.route=/order``, ``net.host.port=8000`` gives
    ``[SpanRecord(service="shop", kind=SpanKind.SERVER, route="/order", method="GET", local_port=8000, ...)]``.
    """
    out: list[SpanRecord] = []
    services: dict[str, str] = {}
    for rs in request.resource_spans:
        service = "unknown_service"
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                service = str(_any_value(kv.value) or service)
        service = services.setdefault(service, service)  # one str object per service
        for ss in rs.scope_spans:
            for span in ss.spans:
                kind = _KIND.get(span.kind, SpanKind.UNSPECIFIED)
                flat: list[object] = []
                for kv in span.attributes:
                    if kv.key in WANTED:
                        flat += (kv.key, _any_value(kv.value))
                out.append(
                    make_span_record(
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex() or None,
                        service,
                        kind,
                        span.name,
                        http_fields_memo(kind, flat),
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        _STATUS.get(span.status.code, SpanStatus.UNSET),
                    )
                )
    return out


def decode_otlp_protobuf(body: bytes) -> list[SpanRecord]:
    """Spans of a protobuf-encoded ``ExportTraceServiceRequest``.

    Raises:
        ValueError: the bytes are not such a message (``google.protobuf.message.DecodeError``).
        UsageError: opentelemetry-proto is not installed.
    """
    from google.protobuf.message import DecodeError

    request = request_class()()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else "corrupt protobuf") from exc
    return decode_otlp_request(request)


def _b64(value: object) -> object:
    if not isinstance(value, str) or not value:
        return value
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError as exc:
        raise ValueError(f"id {value[:40]!r} is not hex") from exc


_RESOURCE_KEYS = frozenset({"service.name"})


def _keep(attributes: Any, keys: frozenset[str]) -> Any:
    if not isinstance(attributes, list):
        return attributes  # let protobuf refuse it
    return [a for a in attributes if not isinstance(a, dict) or a.get("key") in keys]


def hex_ids_to_base64(doc: Any, *, trim: bool = False) -> Any:
    """Rewrite OTLP/JSON hex trace and span ids (also in links) to the base64 that
    ``json_format`` expects for ``bytes`` fields, in place.

    With ``trim``, also drop what loopscope never reads before protobuf parses it (attributes other
    than :data:`~loopscope.traces.attributes.WANTED` and ``service.name``, events, links): parsing
    is then several times faster on real spans, and the decoded spans are the same.

    Example: ``{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "00f067aa0ba902b7"}]}]}]}``
    -> ``spanId == "APBnqguqArc="``.

    Raises:
        ValueError: an id is not hex.
    """
    if not isinstance(doc, dict):
        return doc
    for rs in doc.get("resourceSpans") or doc.get("resource_spans") or ():
        if not isinstance(rs, dict):
            continue
        if trim and isinstance(rs.get("resource"), dict):
            rs["resource"]["attributes"] = _keep(rs["resource"].get("attributes"), _RESOURCE_KEYS)
        scopes = (
            rs.get("scopeSpans") or rs.get("scope_spans") or rs.get("instrumentationLibrarySpans")
        )
        for ss in scopes or ():
            if not isinstance(ss, dict):
                continue
            for span in ss.get("spans") or ():
                if not isinstance(span, dict):
                    continue
                for key in _ID_KEYS:
                    if key in span:
                        span[key] = _b64(span[key])
                if trim:
                    span.pop("events", None)
                    span.pop("links", None)
                    span["attributes"] = _keep(span.get("attributes"), WANTED)
                for link in span.get("links") or ():
                    if isinstance(link, dict):
                        for key in _ID_KEYS:
                            if key in link:
                                link[key] = _b64(link[key])
    return doc


def decode_otlp_json(doc: Any) -> list[SpanRecord]:
    """Spans of one OTLP/JSON ``ExportTraceServiceRequest`` already loaded with ``json.loads``.

    Raises:
        ValueError: not a valid request (``json_format.ParseError`` is a ValueError, so is a bad id).
        UsageError: opentelemetry-proto is not installed.
    """
    cls = request_class()
    from google.protobuf import json_format

    if not isinstance(doc, dict):
        raise ValueError("an OTLP/JSON request is a JSON object with resourceSpans")
    request = cls()
    try:
        for rs in doc.get("resourceSpans") or ():
            if (
                isinstance(rs, dict)
                and "instrumentationLibrarySpans" in rs
                and "scopeSpans" not in rs
            ):
                rs["scopeSpans"] = rs.pop("instrumentationLibrarySpans")  # OTLP < 0.15
        json_format.ParseDict(
            hex_ids_to_base64(doc, trim=True), request, ignore_unknown_fields=True
        )
    except (json_format.ParseError, binascii.Error, TypeError, AttributeError, KeyError) as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    return decode_otlp_request(request)

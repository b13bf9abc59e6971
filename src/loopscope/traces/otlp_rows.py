"""OTLP/JSON -> :data:`~loopscope.analysis.traces.walk.SpanRow` tuples, the 1M-span path of
``loopscope traces FILE`` (pure: parsed JSON in, rows out).

:func:`decode_otlp_json_rows` gives exactly ``[span_row(r) for r in decode_otlp_json_fast(doc)]``
(:mod:`loopscope.traces.otlp_json`), about twice as fast: it builds no SpanRecord, reads the span fields
in one pass with the shapes the Collector and the SDKs write (lowerCamelCase names, ids and 64-bit
times as strings, string and int attribute values), memoises the endpoint with the HTTP fields, and
hands any other shape of a request (snake_case names, numbers for times, a bad value...) to
``decode_otlp_json_fast``, which then decodes it or refuses it with its own error message.
"""

from __future__ import annotations

from typing import Any

from loopscope.analysis.traces.walk import SpanRow, endpoint_from, span_row
from loopscope.model.spans import SpanKind
from loopscope.traces.attributes import WANTED
from loopscope.traces.otlp_json import (
    _CLIENT_READS,
    _KIND,
    _SERVER_READS,
    _STATUS,
    _any_value,
    _service,
    decode_otlp_json_fast,
    http_fields_memo,
)

__all__ = ["decode_otlp_json_rows"]

_KIND_OR_NONE: dict[object, SpanKind] = {**_KIND, None: SpanKind.UNSPECIFIED}
_STATUS_CODES = frozenset([None, *_STATUS])
"""Status codes the reference decoder maps without a check (absent included)."""

_Peer = tuple[str | None, str | None, int | None, int | None]
"""(endpoint or None for the span name, peer_address, peer_port, local_port)."""
_MEMO_MAX = 4096
_MEMO: dict[tuple[object, ...], _Peer] = {}
"""Row fields by the attributes :func:`~loopscope.traces.attributes.http_fields` reads (the key of
:func:`~loopscope.traces.otlp_json.http_fields_memo`); bounded like it."""


class _Irregular(Exception):
    """A shape the fast path leaves to the reference decoder."""


def _row_fields(kind: SpanKind, key: tuple[object, ...]) -> _Peer:
    """Memo miss: the fields through ``http_fields_memo`` (the reference), and the endpoint."""
    route, method, target, peer_address, peer_port, local_port = http_fields_memo(
        kind, list(key[1:])
    )
    found = (endpoint_from(kind, route, method, target), peer_address, peer_port, local_port)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[key] = found
    return found


def _rows(doc: Any, names: dict[str, str]) -> list[SpanRow]:
    """The fast path; raises on any shape it does not take (the caller then asks the reference)."""
    out: list[SpanRow] = []
    append = out.append
    kinds = _KIND_OR_NONE
    server = SpanKind.SERVER
    wanted = WANTED
    memo = _MEMO
    ids: dict[str, str] = {}  # raw id -> normalised (one str per trace id), as the reference does
    resource_spans = doc["resourceSpans"]
    if type(resource_spans) is not list:
        raise _Irregular
    for rs in resource_spans:
        if type(rs) is not dict:
            raise _Irregular
        service = _service(rs)
        service = names.setdefault(service, service)
        scopes = rs["scopeSpans"]
        if type(scopes) is not list:
            raise _Irregular
        for ss in scopes:
            spans = ss.get("spans")
            if spans is None:
                continue
            if type(spans) is not list:
                raise _Irregular
            for span in spans:
                kind = kinds[span.get("kind")]
                reads = _SERVER_READS if kind is server else _CLIENT_READS
                key: list[object] = [kind]
                items = span.get("attributes")
                if items is not None:
                    if type(items) is not list:
                        raise _Irregular
                    for kv in items:
                        name = kv["key"]
                        if name in wanted:
                            value = kv["value"]
                            if type(value) is not dict or len(value) != 1:
                                raise _Irregular
                            v = value.get("stringValue")
                            if type(v) is not str:
                                v = value.get("intValue")
                                if type(v) is str and len(v) < 19 and v.isdigit() and v.isascii():
                                    if name in reads:  # else only checked, as the reference does
                                        key += (name, int(v))
                                    continue
                                v = _any_value(value)
                            if name in reads:
                                key += (name, v)
                memo_key = tuple(key)
                fields = memo.get(memo_key)
                if fields is None:
                    fields = _row_fields(kind, memo_key)
                status = span.get("status")
                if status is not None and status.get("code") not in _STATUS_CODES:
                    raise _Irregular
                endpoint = fields[0]
                if endpoint is None:
                    endpoint = span.get("name")
                    if endpoint is None:
                        endpoint = ""
                    elif type(endpoint) is not str:
                        raise _Irregular
                elif type(span.get("name", "")) is not str:
                    raise _Irregular
                start = span["startTimeUnixNano"]
                end = span["endTimeUnixNano"]
                if not (
                    type(start) is str
                    and len(start) < 20
                    and start.isdigit()
                    and start.isascii()
                    and type(end) is str
                    and len(end) < 20
                    and end.isdigit()
                    and end.isascii()
                ):
                    raise _Irregular
                trace_id = ids.get(span["traceId"])
                if trace_id is None:
                    trace_id = _hex_id(ids, span["traceId"])
                span_id = ids.get(span["spanId"])
                if span_id is None:
                    span_id = _hex_id(ids, span["spanId"])
                parent = span.get("parentSpanId")
                if parent is None:
                    if "parent_span_id" in span:
                        raise _Irregular
                else:
                    parent_id = ids.get(parent)
                    if parent_id is None:
                        parent_id = _hex_id(ids, parent)
                    parent = parent_id or None
                append(
                    (
                        trace_id,
                        span_id,
                        parent,
                        service,
                        kind,
                        endpoint,
                        int(start),
                        int(end),
                        fields[1],
                        fields[2],
                        fields[3],
                    )
                )
    return out


def _hex_id(ids: dict[str, str], value: object) -> str:
    """A lower-case hex id through the per-request cache: ``"00F0"`` -> ``"00f0"``; only strings of hex
    digits (``""`` included) are taken."""
    if type(value) is not str:
        raise _Irregular
    found = ids[value] = bytes.fromhex(value).hex()  # ValueError when not hex
    return found


def decode_otlp_json_rows(doc: Any, names: dict[str, str] | None = None) -> list[SpanRow]:
    """The rows of one parsed OTLP/JSON ``ExportTraceServiceRequest``:
    ``[span_row(r) for r in decode_otlp_json_fast(doc)]``, faster.

    Args:
        doc: the parsed request (``orjson.loads`` of one line).
        names: service names already seen (name -> the one str kept), shared across the requests of
            a file so that a million rows hold a few service strings.

    Example: the worked example of :func:`~loopscope.traces.otlp_json.decode_otlp_json_fast` ->
    ``[("4bf9...4736", "00f067aa0ba902b7", None, "shop", SpanKind.SERVER, "GET /order",
    1700000000000000000, 1700000000012000000, None, None, None)]``.

    Raises:
        ValueError: what :func:`~loopscope.traces.otlp_json.decode_otlp_json_fast` raises.
    """
    if names is None:
        names = {}
    try:
        return _rows(doc, names)
    except (_Irregular, LookupError, TypeError, ValueError, AttributeError):
        pass
    return [span_row(record) for record in decode_otlp_json_fast(doc)]

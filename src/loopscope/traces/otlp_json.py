"""OTLP/JSON -> SpanRecord directly, without protobuf (pure: parsed JSON in, records out).

The OTLP/JSON mapping (opentelemetry-proto ``docs/specification.md``, "JSON Protobuf Encoding") is
protobuf's canonical JSON with three rules that matter here:

- ``traceId``, ``spanId``, ``parentSpanId`` are hex strings (not base64), case-insensitive;
- 64-bit integers (``startTimeUnixNano``, ``intValue``) are decimal strings, numbers accepted too;
- enums (``kind``, ``status.code``) are integers, names (``SPAN_KIND_SERVER``) accepted too;
  field names are lowerCamelCase, the proto names (``start_time_unix_nano``) accepted too.

This reader gives the same SpanRecords as :func:`loopscope.traces.otlp.decode_otlp_json` (the official
``json_format`` decoder, the ``--strict`` path), checked on every fixture and on generated documents by
``tests/unit/traces/test_otlp_json.py``, about 50x faster: only the fields loopscope reads are touched,
and only the attributes in :data:`~loopscope.traces.attributes.WANTED` are decoded.
"""

from __future__ import annotations

import math
from typing import Any

from loopscope.model.spans import SpanKind, SpanRecord, SpanStatus
from loopscope.traces.attributes import WANTED, http_fields

__all__ = ["decode_otlp_json_fast", "http_fields_memo", "make_span_record"]

_KIND: dict[object, SpanKind] = {
    0: SpanKind.UNSPECIFIED,
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
    "SPAN_KIND_UNSPECIFIED": SpanKind.UNSPECIFIED,
    "SPAN_KIND_INTERNAL": SpanKind.INTERNAL,
    "SPAN_KIND_SERVER": SpanKind.SERVER,
    "SPAN_KIND_CLIENT": SpanKind.CLIENT,
    "SPAN_KIND_PRODUCER": SpanKind.PRODUCER,
    "SPAN_KIND_CONSUMER": SpanKind.CONSUMER,
}
_STATUS: dict[object, SpanStatus] = {
    0: SpanStatus.UNSET,
    1: SpanStatus.OK,
    2: SpanStatus.ERROR,
    "STATUS_CODE_UNSET": SpanStatus.UNSET,
    "STATUS_CODE_OK": SpanStatus.OK,
    "STATUS_CODE_ERROR": SpanStatus.ERROR,
}
_Fields = tuple[str | None, str | None, str | None, str | None, int | None, int | None]
_U64 = 2**64
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


_SET = {name: SpanRecord.__dict__[name].__set__ for name in SpanRecord.__dataclass_fields__}
assert len(_SET) == 15, "SpanRecord changed: update _record"
_NEW = object.__new__


def make_span_record(
    trace_id: str,
    span_id: str,
    parent_id: str | None,
    service: str,
    kind: SpanKind,
    name: str,
    fields: _Fields,
    start_ns: int,
    end_ns: int,
    status: SpanStatus,
    *,
    s: dict[str, Any] = _SET,
) -> SpanRecord:
    """A SpanRecord built through its slot descriptors: the frozen dataclass ``__init__`` goes through
    ``object.__setattr__`` per field, about 2.5x slower, which is a third of this reader's time at 1M spans.
    Same object: every field is set, and the tests compare with records built by ``__init__``."""
    r: SpanRecord = _NEW(SpanRecord)
    s["trace_id"](r, trace_id)
    s["span_id"](r, span_id)
    s["parent_id"](r, parent_id)
    s["service"](r, service)
    s["kind"](r, kind)
    s["name"](r, name)
    s["route"](r, fields[0])
    s["method"](r, fields[1])
    s["target"](r, fields[2])
    s["start_ns"](r, start_ns)
    s["end_ns"](r, end_ns)
    s["peer_address"](r, fields[3])
    s["peer_port"](r, fields[4])
    s["local_port"](r, fields[5])
    s["status"](r, status)
    return r


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    value = d.get(camel)
    return d.get(snake) if value is None else value


def _hex(value: object, what: str) -> str:
    """``"00F067AA0BA902B7"`` -> ``"00f067aa0ba902b7"``; ``""``/absent -> ``""``."""
    if type(value) is str and value:
        try:
            return bytes.fromhex(value).hex()
        except ValueError as exc:
            raise ValueError(f"id {value[:40]!r} is not hex") from exc
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a hex string")
    try:
        return bytes.fromhex(value).hex()
    except ValueError as exc:
        raise ValueError(f"id {value[:40]!r} is not hex") from exc


def _id(ids: dict[str, str], value: object, what: str) -> str:
    """:func:`_hex` through a per-request cache, so the spans of a trace share one trace id string and a
    parent id is the parent's span id string (~130 bytes a span less at 1M spans)."""
    if type(value) is str:
        found = ids.get(value)
        if found is None:
            found = ids[value] = _hex(value, what)
        return found
    return _hex(value, what)


def _int(value: object, what: str, low: int, high: int) -> int:
    """An int64/uint64/int32 field: a JSON number or a decimal string (``"1700000000000000000"``)."""
    if type(value) is str and value.isdigit() and value.isascii():
        n = int(value)
        if low <= n <= high:
            return n
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"{what}: not an integer: {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{what}: not an integer: {value!r}")
        n = int(value)
    elif isinstance(value, str):
        try:
            n = int(value)
        except ValueError:
            try:
                f = float(value)
            except ValueError:
                raise ValueError(f"{what}: not an integer: {value[:40]!r}") from None
            if not f.is_integer():
                raise ValueError(f"{what}: not an integer: {value[:40]!r}") from None
            n = int(f)
    else:
        raise ValueError(f"{what}: not an integer: {type(value).__name__}")
    if not low <= n <= high:
        raise ValueError(f"{what}: {n} out of range")
    return n


def _float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"doubleValue: not a number: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if value in ("NaN", "Infinity", "-Infinity"):
            return float(value.replace("Infinity", "inf"))
        f = float(value)  # ValueError when not a number
        if math.isinf(f):
            raise ValueError(f"doubleValue: {value[:40]!r} out of range")
        return f
    raise ValueError(f"doubleValue: not a number: {type(value).__name__}")


def _any_value(value: object) -> object:
    """An ``AnyValue`` object: ``{"stringValue": "GET"}`` -> ``"GET"``, ``{"intValue": "8000"}`` -> 8000;
    arrays, maps, bytes and an empty value -> None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("attribute value is not an object")
    if len(value) > 1:
        raise ValueError("attribute value sets more than one of its oneof fields")
    for key, v in value.items():
        if v is None:
            return None
        if key in ("stringValue", "string_value"):
            if not isinstance(v, str):
                raise ValueError("stringValue is not a string")
            return v
        if key in ("intValue", "int_value"):
            return _int(v, "intValue", _I64_MIN, _I64_MAX)
        if key in ("boolValue", "bool_value"):
            if not isinstance(v, bool):
                raise ValueError("boolValue is not a boolean")
            return v
        if key in ("doubleValue", "double_value"):
            return _float(v)
    return None


_SERVER_READS = WANTED - {
    "server.address",
    "net.peer.name",
    "net.peer.port",
    "network.peer.address",
    "network.peer.port",
}
_CLIENT_READS = WANTED - {"net.host.port", "http.host", "network.peer.address", "network.peer.port"}
"""The keys :func:`~loopscope.traces.attributes.http_fields` reads for a SERVER span and for the others:
the memo key leaves out the rest (a server span's client port differs on every request)."""
_MEMO_MAX = 4096
_MEMO: dict[tuple[object, ...], _Fields] = {}
"""http_fields results by the attributes read (bounded: cleared at :data:`_MEMO_MAX` entries); the
values are immutable, so sharing them between calls and threads is safe."""


def http_fields_memo(kind: SpanKind, flat: list[object]) -> _Fields:
    """:func:`~loopscope.traces.attributes.http_fields` of ``flat = [name1, value1, name2, value2, ...]``
    (the decoded WANTED attributes, in order), memoised on the ones it reads for ``kind``.

    Example: ``http_fields_memo(SpanKind.SERVER, ["http.route", "/x", "net.peer.port", 36214])``
    -> ``("/x", None, None, None, None, None)``, and the next server span of ``/x`` from any client port
    is a dictionary hit.
    """
    reads = _SERVER_READS if kind is SpanKind.SERVER else _CLIENT_READS
    key: list[object] = [kind]
    for i in range(0, len(flat), 2):
        if flat[i] in reads:
            key += flat[i : i + 2]
    memo_key = tuple(key)
    found = _MEMO.get(memo_key)
    if found is None:
        attrs = dict(zip(key[1::2], key[2::2], strict=True))
        found = http_fields(kind, attrs)  # type: ignore[arg-type]
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[memo_key] = found
    return found


def _fields(kind: SpanKind, items: object) -> _Fields:
    """``http_fields`` of a span's OTLP/JSON attribute list."""
    if items is None:
        return http_fields_memo(kind, [])
    if type(items) is not list:
        raise ValueError("attributes is not a list")
    flat: list[object] = []
    for kv in items:
        if type(kv) is not dict:
            raise ValueError("an attribute is not an object")
        name = kv.get("key")
        if name in WANTED:
            value = kv.get("value")
            if (
                type(value) is dict
                and len(value) == 1
                and type(v := value.get("stringValue")) is str
            ):
                flat += (name, v)
            else:
                flat += (name, _any_value(value))
    return http_fields_memo(kind, flat)


def _attrs(items: object, keys: frozenset[str]) -> dict[str, object]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ValueError("attributes is not a list")
    out: dict[str, object] = {}
    for kv in items:
        if not isinstance(kv, dict):
            raise ValueError("an attribute is not an object")
        key = kv.get("key")
        if key in keys:
            out[key] = _any_value(kv.get("value"))
    return out


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value


def _service(rs: dict[str, Any]) -> str:
    """``service.name`` of a resource: each such attribute in turn replaces the name when its value is
    truthy (as the protobuf path reads them)."""
    service = "unknown_service"
    resource = rs.get("resource")
    if resource is None:
        return service
    items = _dict(resource, "resource").get("attributes")
    for kv in _list(items, "resource attributes"):
        if not isinstance(kv, dict):
            raise ValueError("an attribute is not an object")
        if kv.get("key") == "service.name":
            service = str(_any_value(kv.get("value")) or service)
    return service


def decode_otlp_json_fast(doc: Any) -> list[SpanRecord]:
    """Spans of one OTLP/JSON ``ExportTraceServiceRequest`` already parsed (``json.loads``/``orjson``).

    Example: ``{"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value":
    {"stringValue": "shop"}}]}, "scopeSpans": [{"spans": [{"traceId": "4BF9...4736", "spanId":
    "00f067aa0ba902b7", "kind": 2, "name": "GET /order", "startTimeUnixNano": "1700000000000000000",
    "endTimeUnixNano": "1700000000012000000", "attributes": [{"key": "http.route", "value":
    {"stringValue": "/order"}}]}]}]}]}`` -> ``[SpanRecord(trace_id="4bf9...4736", service="shop",
    kind=SpanKind.SERVER, route="/order", start_ns=1700000000000000000, ...)]``.

    Raises:
        ValueError: not such a request (a wrong type, a non-hex id, a time that is not an integer, an
            unknown enum name); the whole request is refused, as the official decoder does.
    """
    if not isinstance(doc, dict):
        raise ValueError("an OTLP/JSON request is a JSON object with resourceSpans")
    out: list[SpanRecord] = []
    append = out.append
    services: dict[str, str] = {}
    kinds, statuses = _KIND, _STATUS
    ids: dict[str, str] = {}  # raw id -> normalised: one str per trace id and per span/parent id
    for rs in _list(_get(doc, "resourceSpans", "resource_spans"), "resourceSpans"):
        rs = _dict(rs, "a resourceSpans entry")
        service = _service(rs)
        service = services.setdefault(service, service)
        scopes = _get(rs, "scopeSpans", "scope_spans")
        if scopes is None:
            scopes = rs.get("instrumentationLibrarySpans")  # OTLP < 0.15
        for ss in _list(scopes, "scopeSpans"):
            for span in _list(_dict(ss, "a scopeSpans entry").get("spans"), "spans"):
                if not isinstance(span, dict):
                    raise ValueError("a span is not an object")
                kind_v = span.get("kind")
                try:
                    kind = kinds[kind_v] if kind_v is not None else SpanKind.UNSPECIFIED
                except (KeyError, TypeError):
                    if isinstance(kind_v, int) and not isinstance(kind_v, bool):
                        _int(kind_v, "kind", _I32_MIN, _I32_MAX)
                        kind = SpanKind.UNSPECIFIED  # an enum number this version does not know
                    else:
                        raise ValueError(f"kind: unknown value {kind_v!r:.40}") from None
                fields = _fields(kind, span.get("attributes"))
                status = span.get("status")
                code = None if status is None else _dict(status, "status").get("code")
                try:
                    status_v = statuses[code] if code is not None else SpanStatus.UNSET
                except (KeyError, TypeError):
                    if isinstance(code, int) and not isinstance(code, bool):
                        _int(code, "status.code", _I32_MIN, _I32_MAX)
                        status_v = SpanStatus.UNSET
                    else:
                        raise ValueError(f"status.code: unknown value {code!r:.40}") from None
                name = span.get("name")
                if name is None:
                    name = ""
                elif not isinstance(name, str):
                    raise ValueError("name is not a string")
                start = span.get("startTimeUnixNano")
                if not (
                    type(start) is str and len(start) < 20 and start.isdigit() and start.isascii()
                ):
                    start = _int(
                        _get(span, "startTimeUnixNano", "start_time_unix_nano"),
                        "startTimeUnixNano",
                        0,
                        _U64 - 1,
                    )
                end = span.get("endTimeUnixNano")
                if not (type(end) is str and len(end) < 20 and end.isdigit() and end.isascii()):
                    end = _int(
                        _get(span, "endTimeUnixNano", "end_time_unix_nano"),
                        "endTimeUnixNano",
                        0,
                        _U64 - 1,
                    )
                append(
                    make_span_record(
                        _id(ids, _get(span, "traceId", "trace_id"), "traceId"),
                        _id(ids, _get(span, "spanId", "span_id"), "spanId"),
                        _id(ids, _get(span, "parentSpanId", "parent_span_id"), "parentSpanId")
                        or None,
                        service,
                        kind,
                        name,
                        fields,
                        int(start),
                        int(end),
                        status_v,
                    )
                )
    return out

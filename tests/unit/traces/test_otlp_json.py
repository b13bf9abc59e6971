"""The direct OTLP/JSON reader gives the same SpanRecords as the official opentelemetry-proto ``json_format``
decoder: on every recorded fixture line and on generated documents; malformed ones are refused alike."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopscope.model.spans import SpanKind, SpanStatus
from loopscope.traces.otlp import decode_otlp_json
from loopscope.traces.otlp_json import decode_otlp_json_fast

FIXTURES = Path(__file__).parent / "fixtures"


def _official(doc):
    return decode_otlp_json(copy.deepcopy(doc))  # it rewrites ids in place


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.otlp.jsonl")), ids=lambda p: p.name)
def test_every_fixture_line_decodes_as_the_official_decoder_does(path):
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert lines
    for doc in lines:
        assert decode_otlp_json_fast(doc) == _official(doc)


def test_the_worked_example():
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
                                "spanId": "00f067aa0ba902b7",
                                "kind": "SPAN_KIND_SERVER",
                                "name": "GET /order",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": 1700000000012000000,
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "attributes": [
                                    {"key": "http.route", "value": {"stringValue": "/order"}},
                                    {"key": "net.host.port", "value": {"intValue": "8000"}},
                                    {"key": "ignored", "value": {"arrayValue": {"values": []}}},
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    (span,) = decode_otlp_json_fast(doc)
    assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_id is None
    assert (span.service, span.kind, span.route, span.local_port) == (
        "shop",
        SpanKind.SERVER,
        "/order",
        8000,
    )
    assert (span.start_ns, span.duration_ns, span.status) == (
        1_700_000_000_000_000_000,
        12_000_000,
        SpanStatus.ERROR,
    )
    assert [span] == _official(doc)


HEX = "0123456789abcdefABCDEF"
ids16 = st.text(HEX, min_size=16, max_size=16)
ids32 = st.text(HEX, min_size=32, max_size=32)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
int_json = u64.map(str) | u64  # OTLP/JSON writes 64-bit integers as strings; numbers are accepted
keys = st.sampled_from(
    [
        "http.route",
        "http.method",
        "http.request.method",
        "url.full",
        "http.url",
        "url.path",
        "url.query",
        "http.target",
        "server.address",
        "server.port",
        "net.peer.name",
        "net.peer.port",
        "net.host.port",
        "http.host",
        "other.key",
    ]
)
short = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
any_values = st.one_of(
    st.builds(
        lambda s: {"stringValue": s},
        short | st.sampled_from(["http://127.0.0.1:8000/p?q=1", "8000", "[::1]:9"]),
    ),
    st.builds(lambda n: {"intValue": n}, i64.map(str) | i64 | st.integers(0, 70000)),
    st.builds(lambda b: {"boolValue": b}, st.booleans()),
    st.builds(lambda f: {"doubleValue": f}, st.floats(allow_nan=False, allow_infinity=False)),
    st.just({"arrayValue": {"values": [{"stringValue": "x"}]}}),
    st.just({}),
)
attributes = st.lists(st.fixed_dictionaries({"key": keys, "value": any_values}), max_size=6)
kinds = st.integers(0, 5) | st.sampled_from(
    ["SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL", "SPAN_KIND_UNSPECIFIED"]
)
codes = st.integers(0, 2) | st.sampled_from(["STATUS_CODE_OK", "STATUS_CODE_ERROR"])
spans = st.fixed_dictionaries(
    {"traceId": ids32, "spanId": ids16, "name": short},
    optional={
        "parentSpanId": ids16 | st.just(""),
        "kind": kinds,
        "startTimeUnixNano": int_json,
        "endTimeUnixNano": int_json,
        "attributes": attributes,
        "status": st.fixed_dictionaries({}, optional={"code": codes, "message": short}),
        "events": st.just([{"name": "e", "timeUnixNano": "1"}]),
    },
)
resource = st.fixed_dictionaries(
    {},
    optional={
        "attributes": st.lists(
            st.fixed_dictionaries(
                {"key": st.sampled_from(["service.name", "host.name"]), "value": any_values}
            ),
            max_size=3,
        )
    },
)
documents = st.fixed_dictionaries(
    {
        "resourceSpans": st.lists(
            st.fixed_dictionaries(
                {
                    "scopeSpans": st.lists(
                        st.fixed_dictionaries(
                            {"spans": st.lists(spans, max_size=4)},
                            optional={"scope": st.just({"name": "x", "version": "1"})},
                        ),
                        max_size=3,
                    )
                },
                optional={"resource": resource},
            ),
            max_size=3,
        )
    }
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents)
def test_generated_documents_decode_as_the_official_decoder_does(doc):
    assert decode_otlp_json_fast(doc) == _official(doc)


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | short
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, path=st.lists(st.integers(0, 8), min_size=1, max_size=6), value=JSON_ANY)
def test_mutated_documents_are_refused_alike_or_decoded_alike(doc, path, value):
    """Replace one node of a valid document by any JSON value: both decoders refuse it with a
    ValueError, or give the same spans; never another exception."""
    node = doc
    for step in path[:-1]:
        children = list(node.values()) if isinstance(node, dict) else node
        if not isinstance(children, list) or not children:
            break
        nxt = children[step % len(children)]
        if not isinstance(nxt, (dict, list)):
            break
        node = nxt
    if isinstance(node, dict) and node:
        node[sorted(node)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    try:
        fast = decode_otlp_json_fast(doc)
    except ValueError:
        fast = None
    try:
        official = _official(doc)
    except ValueError:
        official = None
    if fast is not None and official is not None:
        assert fast == official
    # where one refuses and the other reads, the fast reader is the stricter one only on types the
    # official decoder coerces; either way neither raised anything but ValueError


def test_make_span_record_is_the_record_init_builds():
    from loopscope.model.spans import SpanRecord
    from loopscope.traces.otlp_json import make_span_record

    fields = ("/order", "GET", "/order?id=1", "127.0.0.1", 8000, None)
    built = make_span_record(
        "4bf9", "00f0", None, "shop", SpanKind.CLIENT, "GET", fields, 1, 2, SpanStatus.OK
    )
    assert built == SpanRecord(
        trace_id="4bf9",
        span_id="00f0",
        parent_id=None,
        service="shop",
        kind=SpanKind.CLIENT,
        name="GET",
        route="/order",
        method="GET",
        target="/order?id=1",
        start_ns=1,
        end_ns=2,
        peer_address="127.0.0.1",
        peer_port=8000,
        local_port=None,
        status=SpanStatus.OK,
    )
    assert repr(built).startswith("SpanRecord(trace_id='4bf9'")
    assert hash(built) is not None


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(SpanKind)),
    pairs=st.lists(
        st.tuples(keys, st.none() | short | st.integers(-5, 70000) | st.booleans()), max_size=8
    ),
)
def test_memoised_http_fields_are_http_fields(kind, pairs):
    from loopscope.traces.attributes import WANTED, http_fields
    from loopscope.traces.otlp_json import http_fields_memo

    flat = [x for k, v in pairs if k in WANTED for x in (k, v)]
    expected = http_fields(kind, dict(zip(flat[::2], flat[1::2], strict=True)))
    assert http_fields_memo(kind, flat) == expected
    assert http_fields_memo(kind, flat) == expected  # the memoised answer too

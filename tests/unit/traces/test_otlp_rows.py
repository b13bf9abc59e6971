"""decode_otlp_json_rows gives the rows of decode_otlp_json_fast's records, on the fixtures, on documents
shaped as the Collector writes them (its fast path) and on any mutation of them (its fallback), and
refuses what the reference refuses with the same message."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopscope.analysis.traces.walk import span_row
from loopscope.model.spans import SpanKind
from loopscope.traces.otlp_json import decode_otlp_json_fast
from loopscope.traces.otlp_rows import _rows, decode_otlp_json_rows

FIXTURES = Path(__file__).parent / "fixtures"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reference(doc):
    try:
        return [span_row(r) for r in decode_otlp_json_fast(copy.deepcopy(doc))]
    except ValueError as exc:
        return f"ValueError: {exc}"


def _rows_of(doc):
    try:
        return decode_otlp_json_rows(doc, {})
    except ValueError as exc:
        return f"ValueError: {exc}"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.otlp.jsonl")), ids=lambda p: p.name)
def test_fixture_lines_take_the_fast_path_and_give_the_reference_rows(path):
    docs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert docs
    for doc in docs:
        assert _rows(doc, {}) == _reference(doc)  # _rows raises where it would fall back


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
                                "kind": 2,
                                "name": "GET /order",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000012000000",
                                "attributes": [
                                    {"key": "http.route", "value": {"stringValue": "/order"}},
                                    {"key": "http.method", "value": {"stringValue": "GET"}},
                                    {"key": "net.host.port", "value": {"intValue": "8000"}},
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    assert decode_otlp_json_rows(doc) == [
        (
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            None,
            "shop",
            SpanKind.SERVER,
            "GET /order",
            1_700_000_000_000_000_000,
            1_700_000_000_012_000_000,
            None,
            None,
            8000,
        )
    ]


def test_service_names_are_shared_across_requests():
    line = (FIXTURES / "selfcall.otlp.jsonl").read_text().splitlines()[0]
    names: dict[str, str] = {}
    a = decode_otlp_json_rows(json.loads(line), names)
    b = decode_otlp_json_rows(json.loads(line), names)
    assert a == b and a[0][3] is b[0][3]


HEX = "0123456789abcdefABCDEF"
ids = st.text(HEX, min_size=16, max_size=16) | st.text(HEX, min_size=32, max_size=32)
times = st.integers(0, 10**19).map(str)
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
        "network.peer.address",
        "http.host",
        "other.key",
    ]
)
values = (
    st.builds(
        lambda s: {"stringValue": s},
        st.sampled_from(["/x", "GET", "", "127.0.0.1", "http://127.0.0.1:8000/p?q=1", "h:80"]),
    )
    | st.builds(
        lambda n: {"intValue": n},
        st.integers(0, 70000).map(str) | st.sampled_from(["9" * 18, "9" * 19, "0080"]),
    )
    | st.builds(lambda b: {"boolValue": b}, st.booleans())
)
span = st.fixed_dictionaries(
    {
        "traceId": ids,
        "spanId": ids,
        "name": st.sampled_from(["GET /a", "GET", ""]),
        "kind": st.integers(0, 5) | st.sampled_from(["SPAN_KIND_SERVER", "SPAN_KIND_CLIENT"]),
        "startTimeUnixNano": times,
        "endTimeUnixNano": times,
        "attributes": st.lists(st.fixed_dictionaries({"key": keys, "value": values}), max_size=8),
        "status": st.just({}) | st.just({"code": 2}) | st.just({"code": "STATUS_CODE_OK"}),
    },
    optional={"parentSpanId": ids | st.just("")},
)
collector_docs = st.fixed_dictionaries(
    {
        "resourceSpans": st.lists(
            st.fixed_dictionaries(
                {
                    "resource": st.fixed_dictionaries(
                        {
                            "attributes": st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "key": st.sampled_from(["service.name", "host.name"]),
                                        "value": values,
                                    }
                                ),
                                max_size=2,
                            )
                        }
                    ),
                    "scopeSpans": st.lists(
                        st.fixed_dictionaries({"spans": st.lists(span, max_size=4)}), max_size=2
                    ),
                }
            ),
            max_size=2,
        )
    }
)
JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@FUZZ
@given(doc=collector_docs)
def test_collector_shaped_documents_give_the_reference_rows(doc):
    assert _rows_of(doc) == _reference(doc)


@FUZZ
@given(
    doc=collector_docs,
    path=st.lists(st.integers(0, 12), min_size=1, max_size=7),
    value=JSON_ANY | st.sampled_from(["", "xyz", "00", None, [], {}, "SPAN_KIND_SERVER", 1.5]),
)
def test_mutated_documents_give_the_reference_rows_or_its_error(doc, path, value):
    """Replace one node of a Collector-shaped document by any JSON value: the same rows, or the same
    ValueError message, as the reference."""
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
        expected = _reference(doc)
    except TypeError:  # the reference's own behaviour on an unhashable key (not a ValueError)
        with pytest.raises(TypeError):
            _rows_of(doc)
        return
    assert _rows_of(doc) == expected

"""Readers on spans recorded from the real app (OTLP/JSON, Zipkin), a Jaeger document, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopscope.analysis.traces import summarize_span_rows, summarize_traces
from loopscope.analysis.traces.walk import span_row
from loopscope.errors import LoopscopeError, ParseError
from loopscope.model.spans import SpanKind
from loopscope.traces.otlp import (
    decode_otlp_json,
    decode_otlp_protobuf,
    hex_ids_to_base64,
    request_class,
)
from loopscope.traces.read import read_span_rows, read_spans

FIXTURES = Path(__file__).parent / "fixtures"
OTLP = FIXTURES / "selfcall.otlp.jsonl"
ZIPKIN = FIXTURES / "selfcall.zipkin.json"
# recorded by tests/live/apps/otel_run.py: 5 rounds of /seq /fan /none /other, plus one /x per service
EXPECTED = {
    ("shop", "GET /seq"): (5, 10, 2.0),
    ("shop", "GET /fan"): (5, 15, 3.0),
    ("shop", "GET /none"): (5, 0, 0.0),
    ("shop", "GET /other"): (5, 0, 0.0),
    ("shop", "GET /x"): (1, 0, 0.0),
    ("backend", "GET /x"): (6, 0, 0.0),
}

JAEGER = {
    "data": [
        {
            "traceID": "0af7651916cd43dd8448eb211c80319c",
            "processes": {"p1": {"serviceName": "shop", "tags": []}},
            "spans": [
                {
                    "traceID": "0af7651916cd43dd8448eb211c80319c",
                    "spanID": "00000000000000a1",
                    "operationName": "GET /order",
                    "references": [],
                    "startTime": 1_000_000,
                    "duration": 100_000,
                    "processID": "p1",
                    "tags": [
                        {"key": "span.kind", "type": "string", "value": "server"},
                        {"key": "http.method", "type": "string", "value": "GET"},
                        {"key": "http.route", "type": "string", "value": "/order"},
                        {"key": "net.host.port", "type": "int64", "value": 8000},
                    ],
                },
                {
                    "traceID": "0af7651916cd43dd8448eb211c80319c",
                    "spanID": "00000000000000b2",
                    "operationName": "GET",
                    "references": [
                        {
                            "refType": "CHILD_OF",
                            "traceID": "0af7651916cd43dd8448eb211c80319c",
                            "spanID": "00000000000000a1",
                        }
                    ],
                    "startTime": 1_010_000,
                    "duration": 50_000,
                    "processID": "p1",
                    "tags": [
                        {"key": "span.kind", "type": "string", "value": "client"},
                        {"key": "http.method", "type": "string", "value": "GET"},
                        {
                            "key": "http.url",
                            "type": "string",
                            "value": "http://127.0.0.1:8000/price",
                        },
                    ],
                },
            ],
        }
    ]
}


def _table(spans):
    return {
        (e.service, e.endpoint): (e.requests, e.self_calls, e.amplification)
        for e in summarize_traces(spans).endpoints
    }


def test_otlp_fixture_gives_the_known_counts():
    got = read_spans(OTLP)
    assert (got.format, len(got.spans), got.gaps) == ("otlp-json", 82, ())
    assert all(len(s.trace_id) == 32 and len(s.span_id) == 16 for s in got.spans)
    assert _table(got.spans) == EXPECTED


def test_zipkin_fixture_of_the_same_run_gives_the_same_report():
    got = read_spans(ZIPKIN)
    assert (got.format, len(got.spans)) == ("zipkin", 82)
    assert _table(got.spans) == EXPECTED
    otlp = {(s.trace_id, s.span_id, s.parent_id, s.kind) for s in read_spans(OTLP).spans}
    assert {(s.trace_id, s.span_id, s.parent_id, s.kind) for s in got.spans} == otlp


def test_one_pretty_printed_otlp_document(tmp_path):
    first = json.loads(OTLP.read_text().splitlines()[0])
    path = tmp_path / "one.json"
    path.write_text(json.dumps(first, indent=2))
    got = read_spans(path)
    assert got.documents == 1 and len(got.spans) == len(decode_otlp_json(first))


def test_protobuf_and_json_encodings_decode_alike():
    line = OTLP.read_text().splitlines()[-1]
    request = request_class()()
    json_format.ParseDict(hex_ids_to_base64(json.loads(line)), request)
    assert decode_otlp_protobuf(request.SerializeToString()) == decode_otlp_json(json.loads(line))


def test_jaeger_document(tmp_path):
    path = tmp_path / "jaeger.json"
    path.write_text(json.dumps(JAEGER))
    got = read_spans(path)
    server, client = got.spans
    assert got.format == "jaeger"
    assert (server.kind, server.route, server.local_port, server.start_ns) == (
        SpanKind.SERVER,
        "/order",
        8000,
        1_000_000_000,
    )
    assert (client.parent_id, client.peer_address, client.peer_port, client.target) == (
        "00000000000000a1",
        "127.0.0.1",
        8000,
        "/price",
    )
    ep = summarize_traces(got.spans).endpoints[0]
    assert (ep.self_calls, ep.call_summary) == (1, "GET /order -> GET /price x1")


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "not json", "[1, 2", '{"hello": 1}', "[]", '{"resourceSpans": 5}'],
)
def test_bad_files_are_one_line_errors(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ParseError) as info:
        read_spans(path)
    assert "\n" not in str(info.value)


def test_a_bad_line_is_skipped_and_stated(tmp_path):
    lines = OTLP.read_text().splitlines()
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                lines[0],
                "{broken",
                lines[1],
                '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            ]
        )
    )
    got = read_spans(path)
    assert len(got.spans) == len(decode_otlp_json(json.loads(lines[0]))) + len(
        decode_otlp_json(json.loads(lines[1]))
    )
    assert got.gaps[0].what == "2 of 4 lines"


def test_missing_file(tmp_path):
    with pytest.raises(ParseError):
        read_spans(tmp_path / "nope.jsonl")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = ["traceId", "spanId", "parentSpanId", "kind", "startTimeUnixNano", "endTimeUnixNano", "attributes", "name", "id", "timestamp", "duration", "localEndpoint", "remoteEndpoint", "tags", "spans", "processes", "references"]  # fmt: skip


def _mutate(doc, path_choice, key, value):
    """Replace or delete one value somewhere in the document."""
    node = doc
    for step in path_choice:
        children = (
            list(node.items())
            if isinstance(node, dict)
            else list(enumerate(node))
            if isinstance(node, list)
            else []
        )
        if not children:
            break
        k, child = children[step % len(children)]
        if not isinstance(child, (dict, list)):
            node[k] = value
            return doc
        node = child
    if isinstance(node, dict):
        if value is None and node:
            node.pop(next(iter(node)))
        else:
            node[key] = value
    return doc


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_fuzz_garbage_never_a_traceback(tmp_path, data):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    try:
        read_spans(path)
    except LoopscopeError:
        pass


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.sampled_from([OTLP, ZIPKIN]),
    path_choice=st.lists(st.integers(0, 50), max_size=8),
    key=st.sampled_from(KEYS),
    value=JSON_VALUES,
)
def test_fuzz_mutated_real_spans_read_or_fail_cleanly(tmp_path, which, path_choice, key, value):
    text = which.read_text()
    doc = json.loads(text.splitlines()[0]) if which == OTLP else json.loads(text)
    path = tmp_path / "mutated.json"
    path.write_text(json.dumps(_mutate(doc, path_choice, key, value)))
    try:
        got = read_spans(path)
    except LoopscopeError as exc:
        assert "\n" not in str(exc)
        return
    summarize_traces(got.spans)  # whatever was read, the analysis takes it


def _rows_and_rest(got):
    return got.format, got.documents, got.gaps


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_span_rows_are_the_rows_of_the_records_with_the_same_gaps_and_line_numbers(
    tmp_path, workers
):
    """A file with blank and bad lines in every part: read_span_rows in 1-3 processes gives the rows of
    read_spans' records, the same documents and the same gaps (line number of the first bad line)."""
    lines = [line for line in OTLP.read_text().splitlines() if line.strip()]
    text = [*lines, "", "  ", *lines, "{broken", *lines[:3], "[1]", "", "{bad", lines[0]]
    path = tmp_path / "parts.jsonl"
    path.write_text("\n".join(text) + "\n")
    records = read_spans(path)
    got = read_span_rows(path, workers=workers)
    assert got.rows == [span_row(s) for s in records.spans]
    assert _rows_and_rest(got) == (records.format, records.documents, records.gaps)
    # the first bad line is in the last part: its number counts the lines of the parts before
    assert f"parts.jsonl:{2 * len(lines) + 3}:" in records.gaps[0].reason
    assert summarize_span_rows(got.rows) == summarize_traces(records.spans)


def test_span_rows_of_the_fixtures_and_their_report(tmp_path):
    for path in (OTLP, ZIPKIN):
        records = read_spans(path)
        got = read_span_rows(path, workers=2)
        assert got.rows == [span_row(s) for s in records.spans]
        assert _rows_and_rest(got) == (records.format, records.documents, records.gaps)


def test_span_rows_of_a_file_of_bad_lines_is_the_first_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("[1]\n" * 50 + '{"x": 1}\n' * 50)
    with pytest.raises(ParseError) as serial:
        read_spans(path)
    with pytest.raises(ParseError) as parallel:
        read_span_rows(path, workers=2)
    assert str(parallel.value) == str(serial.value)


def test_span_rows_when_a_part_cannot_be_read_in_its_process(tmp_path, monkeypatch):
    """A child that fails sends None: its part is read again here, with the same result."""
    import loopscope.traces.read as read_mod

    lines = [line for line in OTLP.read_text().splitlines() if line.strip()]
    path = tmp_path / "two.jsonl"
    path.write_text("\n".join(lines * 4) + "\n")
    real = read_mod._read_part
    parent = __import__("os").getpid()

    def failing_in_child(*args):
        if __import__("os").getpid() != parent:
            raise OSError("disk gone")
        return real(*args)

    monkeypatch.setattr(read_mod, "_read_part", failing_in_child)
    got = read_span_rows(path, workers=2)
    assert got.rows == [span_row(s) for s in read_spans(path).spans]


def test_default_workers_by_file_size(tmp_path):
    import os

    from loopscope.traces.read import PARALLEL_MIN_BYTES, _default_workers

    big = tmp_path / "big.jsonl"
    with big.open("wb") as f:
        f.truncate(PARALLEL_MIN_BYTES)  # sparse: the size is what counts
    assert _default_workers(OTLP) == 1
    assert _default_workers(tmp_path / "missing.jsonl") == 1
    assert _default_workers(big) == (2 if len(os.sched_getaffinity(0)) >= 2 else 1)

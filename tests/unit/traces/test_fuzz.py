"""Fuzz every trace reader (decode_otlp_json_fast, decode_otlp_json, decode_otlp_protobuf, decode_jaeger,
decode_zipkin, decode_document, read_spans) and the analysis behind them: malformed JSON and protobuf,
missing parents, clock skew, cycles, duplicates. A reader refuses with ValueError (read_spans: ParseError)
or returns spans; the analysis then states every kind of damage as a gap; nothing else is ever raised."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loopscope.analysis.traces import check_traces, summarize_traces
from loopscope.errors import ParseError
from loopscope.model.spans import SpanKind, SpanRecord
from loopscope.traces.jaeger import decode_jaeger
from loopscope.traces.otlp import decode_otlp_json, decode_otlp_protobuf, request_class
from loopscope.traces.otlp_json import decode_otlp_json_fast
from loopscope.traces.read import SpanInput, decode_document, read_spans
from loopscope.traces.zipkin import decode_zipkin

FIXTURES = Path(__file__).parent / "fixtures"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

text = st.text(max_size=10)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "resourceSpans",
        "scopeSpans",
        "spans",
        "traceId",
        "spanId",
        "parentSpanId",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "resource",
        "status",
        "data",
        "processes",
        "traceID",
        "spanID",
        "references",
        "tags",
        "id",
        "parentId",
        "timestamp",
        "duration",
        "localEndpoint",
        "remoteEndpoint",
    ]
)
# JSON shaped like span documents: the readers' own keys, any values
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | text | st.just("00f067aa0ba902b7"),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
DOCS = (
    JSON | SHAPED | SHAPED.map(lambda v: {"resourceSpans": v}) | SHAPED.map(lambda v: {"data": v})
)


def _reads_or_refuses(fn, doc) -> object:
    try:
        return fn(doc)
    except ValueError:
        return None


@FUZZ
@given(doc=DOCS)
@example(doc=None)  # decode_jaeger(None) was an AttributeError
@example(doc={"spans": True})  # Jaeger "spans" that is not a list was a TypeError
@example(doc=[{"traceId": "a", "id": "b", "timestamp": 1e400}])  # Zipkin time inf: OverflowError
def test_every_json_reader_reads_or_raises_value_error(doc):
    for fn in (decode_otlp_json_fast, decode_jaeger, decode_zipkin, decode_document):
        _reads_or_refuses(fn, json.loads(json.dumps(doc)))
    _reads_or_refuses(decode_otlp_json, json.loads(json.dumps(doc)))
    _reads_or_refuses(lambda d: decode_document(d, strict=True), json.loads(json.dumps(doc)))


def _real_protobuf() -> bytes:
    from google.protobuf import json_format

    from loopscope.traces.otlp import hex_ids_to_base64

    line = (FIXTURES / "selfcall.otlp.jsonl").read_text().splitlines()[0]
    request = request_class()()
    json_format.ParseDict(hex_ids_to_base64(json.loads(line)), request)
    return request.SerializeToString()


REAL_PB = _real_protobuf()


@FUZZ
@given(
    data=st.binary(max_size=300)
    | st.tuples(st.integers(0, len(REAL_PB) - 1), st.binary(min_size=1, max_size=8)).map(
        lambda t: REAL_PB[: t[0]] + t[1] + REAL_PB[t[0] + len(t[1]) :]
    )
    | st.integers(0, len(REAL_PB)).map(lambda n: REAL_PB[:n])
)
def test_protobuf_reader_reads_or_raises_value_error(data):
    spans = _reads_or_refuses(decode_otlp_protobuf, data)
    if spans is not None:
        summarize_traces(spans)  # whatever came out can be analysed


@FUZZ
@given(
    data=st.binary(max_size=300)
    | DOCS.map(lambda d: json.dumps(d).encode())
    | st.lists(DOCS.map(json.dumps), min_size=1, max_size=4).map(lambda ls: "\n".join(ls).encode())
)
def test_read_spans_gives_spans_or_one_parse_error(tmp_path, data):
    path = tmp_path / "spans.json"
    path.write_bytes(data)
    try:
        got = read_spans(path)
    except ParseError as exc:
        assert str(exc)
        return
    assert isinstance(got, SpanInput)
    check_traces(summarize_traces(got.spans))


IDS = st.sampled_from([f"{i:016x}" for i in range(1, 9)])


@st.composite
def broken_traces(draw):
    """Spans of a few traces whose parent links may point nowhere (missing parents), at each other
    (cycles), at themselves, or repeat (duplicates), with any times (skew, negative durations)."""
    spans = []
    for _ in range(draw(st.integers(1, 12))):
        spans.append(
            SpanRecord(
                trace_id=draw(st.sampled_from(["a" * 32, "b" * 32])),
                span_id=draw(IDS),
                parent_id=draw(st.none() | IDS | st.just("ffffffffffffffff")),
                service=draw(st.sampled_from(["shop", "backend"])),
                kind=draw(st.sampled_from([SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL])),
                name=draw(st.sampled_from(["GET /a", "GET /b"])),
                route=draw(st.none() | st.just("/a")),
                start_ns=draw(st.integers(0, 10**10)),
                end_ns=draw(st.integers(0, 10**10)),
                peer_address=draw(st.none() | st.just("127.0.0.1") | st.just("::1")),
                peer_port=draw(st.none() | st.integers(1, 3)),
                local_port=draw(st.none() | st.integers(1, 3)),
            )
        )
    return spans


@FUZZ
@given(spans=broken_traces(), ratio=st.none() | st.floats(0.01, 1.0))
def test_broken_traces_give_a_report_with_their_gaps(spans, ratio):
    report = summarize_traces(spans, sample_ratio=ratio)
    check_traces(report)
    whats = " | ".join(g.what for g in report.gaps)
    ids = {(s.trace_id, s.span_id) for s in spans}
    if len(ids) < len(spans):
        assert "duplicate" in whats
    firsts: dict[tuple[str, str], SpanRecord] = {}
    for s in spans:
        firsts.setdefault((s.trace_id, s.span_id), s)
    if any(
        s.parent_id is not None and (s.trace_id, s.parent_id) not in firsts for s in firsts.values()
    ):
        assert "parent of" in whats
    for ep in report.endpoints:
        assert 0 <= ep.waiting_share <= 1
        assert ep.self_calls >= 0


@FUZZ
@given(n=st.integers(2, 6), skew_ms=st.integers(5, 10_000))
def test_a_cycle_and_a_skewed_child_are_stated(n, skew_ms):
    ids = [f"{i:016x}" for i in range(1, n + 1)]
    cycle = [
        SpanRecord(
            trace_id="c" * 32,
            span_id=ids[i],
            parent_id=ids[(i + 1) % n],
            service="shop",
            kind=SpanKind.SERVER,
            name="GET /loop",
            start_ns=0,
            end_ns=1_000_000,
        )
        for i in range(n)
    ]
    root = SpanRecord(
        trace_id="d" * 32,
        span_id="1" * 16,
        parent_id=None,
        service="shop",
        kind=SpanKind.SERVER,
        name="GET /a",
        start_ns=10**9,
        end_ns=10**9 + 10**6,
    )
    child = SpanRecord(
        trace_id="d" * 32,
        span_id="2" * 16,
        parent_id="1" * 16,
        service="shop",
        kind=SpanKind.CLIENT,
        name="GET",
        start_ns=10**9 - skew_ms * 10**6,
        end_ns=10**9,
    )
    report = summarize_traces([*cycle, root, child])
    whats = [g.what for g in report.gaps]
    assert f"{n} spans in parent cycles" in whats
    assert "timing of 1 spans" in whats


def test_a_100k_span_file_with_damage_reads_with_gaps(tmp_path):
    """100k-span file (copies of the recorded lines with their own trace ids), one line in 50 after the
    first cut short: the rest is read and the bad lines are one gap."""
    import re

    lines = (FIXTURES / "selfcall.otlp.jsonl").read_text().splitlines()
    trace_id = re.compile(r'"traceId": "[0-9a-f]{8}')
    out = []
    for k in range(-(-100_000 // 82)):
        for line in lines:
            line = trace_id.sub(f'"traceId": "{k:08x}', line)
            out.append(line[: len(line) // 2] if len(out) % 50 == 1 else line)
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(out) + "\n")
    got = read_spans(path)
    bad = sum(1 for i in range(len(out)) if i % 50 == 1)
    assert got.documents == len(out)
    (gap,) = [g for g in got.gaps if "lines" in g.what]
    assert gap.count == bad
    report = summarize_traces(got.spans)
    assert report.spans == len(got.spans) > 90_000
    assert report.traces > 1000 and not [g for g in report.gaps if "duplicate" in g.what]

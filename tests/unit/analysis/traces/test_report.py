"""summarize_traces / check_traces on hand-built span trees with known answers."""

from __future__ import annotations

import itertools

from loopscope.analysis.traces import check_traces, summarize_traces
from loopscope.analysis.traces.stats import clipped_union_ns
from loopscope.model.spans import SpanKind, SpanRecord

_ids = itertools.count(1)
MS = 1_000_000


def span(trace, parent, service, kind, name, start_ms, end_ms, **kw):
    return SpanRecord(
        trace_id=trace,
        span_id=f"{next(_ids):016x}",
        parent_id=parent.span_id if parent is not None else None,
        service=service,
        kind=kind,
        name=name,
        start_ns=start_ms * MS,
        end_ns=end_ms * MS,
        **kw,
    )


def server(trace, parent, service, route, start, end, port=8000):
    return span(
        trace,
        parent,
        service,
        SpanKind.SERVER,
        f"GET {route}",
        start,
        end,
        route=route,
        method="GET",
        local_port=port,
    )


def client(trace, parent, service, path, start, end, port=8000, address="127.0.0.1"):
    return span(
        trace,
        parent,
        service,
        SpanKind.CLIENT,
        "GET",
        start,
        end,
        method="GET",
        target=path,
        peer_address=address,
        peer_port=port,
    )


def self_call(trace, parent, route, start, end):
    c = client(trace, parent, "shop", route, start, end)
    return [c, server(trace, c, "shop", route, start + 1, end - 1)]


def app_traces(n=4):
    spans = []
    for i in range(n):
        t = f"{i:032x}"
        seq = server(t + "a", None, "shop", "/seq", 0, 100)
        spans += [
            seq,
            *self_call(t + "a", seq, "/price", 10, 30),
            *self_call(t + "a", seq, "/stock", 40, 60),
        ]
        fan = server(t + "b", None, "shop", "/fan", 0, 100)
        spans.append(fan)
        for route in ("/a", "/b", "/c"):
            spans += self_call(t + "b", fan, route, 10, 50)  # parallel: union 40 ms, not 120
        spans.append(server(t + "c", None, "shop", "/none", 0, 10))
        other = server(t + "d", None, "shop", "/other", 0, 50)
        c = client(t + "d", other, "shop", "/x", 10, 40, port=9000)
        spans += [other, c, server(t + "d", c, "backend", "/x", 11, 39, port=9000)]
    return spans


def test_counts_and_factors_per_endpoint():
    report = summarize_traces(app_traces(4))
    eps = {e.endpoint: e for e in report.endpoints if e.service == "shop"}
    assert {k: (e.requests, e.self_calls, e.amplification) for k, e in eps.items()} == {
        "GET /seq": (4, 8, 2.0),
        "GET /fan": (4, 12, 3.0),
        "GET /none": (4, 0, 0.0),
        "GET /other": (4, 0, 0.0),
    }
    assert eps["GET /seq"].call_summary == "GET /seq -> GET /price x1, GET /stock x1"
    assert eps["GET /other"].callees == (("backend", 4),)
    assert eps["GET /seq"].waiting_share == 0.4  # 20 + 20 of 100 ms
    assert eps["GET /fan"].waiting_share == 0.4  # union of three overlapping 40 ms calls
    assert eps["GET /seq"].p50_with_self_ms == 100.0 and eps["GET /seq"].p50_without_self_ms is None
    shop = next(s for s in report.services if s.service == "shop")
    assert (shop.requests, shop.self_calls, shop.amplification) == (16, 20, 1.25)
    backend = next(e for e in report.endpoints if e.service == "backend")
    assert (backend.requests, backend.self_calls) == (4, 0)
    assert report.worst_by_self_calls[0].endpoint == "GET /fan"
    assert report.gaps == ()
    edges = {(e.client, e.server): (e.calls, e.self_call) for e in report.edges}
    assert edges == {("shop", "shop"): (20, True), ("shop", "backend"): (4, False)}


def test_findings_name_the_endpoint():
    findings = check_traces(summarize_traces(app_traces(2)))
    hot = {f.subject: f.severity.value for f in findings if f.code == "SELF_CALL_ON_HOT_PATH"}
    assert hot == {"shop GET /seq": "high", "shop GET /fan": "high"}
    assert {f.subject for f in findings if f.code == "SELF_CALL"} == {
        "shop GET /seq",
        "shop GET /fan",
    }


def test_untraced_callee_matched_by_peer_port_and_gap_stated():
    t = "f" * 32
    root = server(t, None, "shop", "/seq", 0, 100)
    spans = [
        root,
        client(t, root, "shop", "/price", 10, 30),
        client(t, root, "shop", "/ext", 40, 50, port=443, address="10.1.1.1"),
    ]
    report = summarize_traces(spans)
    ep = report.endpoints[0]
    assert (ep.self_calls, ep.other_calls, ep.callees) == (1, 1, (("10.1.1.1:443", 1),))
    assert any("server side of 1 self-calls" in g.what for g in report.gaps)


def test_missing_parent_cycle_skew_duplicate_are_gaps_not_errors():
    t = "e" * 32
    root = server(t, None, "shop", "/a", 0, 10)
    orphan = SpanRecord(
        trace_id=t,
        span_id="aa",
        parent_id="zz",
        service="shop",
        kind=SpanKind.SERVER,
        name="GET /b",
        start_ns=0,
        end_ns=5,
    )
    a = SpanRecord(
        trace_id=t,
        span_id="c1",
        parent_id="c2",
        service="shop",
        kind=SpanKind.INTERNAL,
        name="x",
        start_ns=0,
        end_ns=1,
    )
    b = SpanRecord(
        trace_id=t,
        span_id="c2",
        parent_id="c1",
        service="shop",
        kind=SpanKind.INTERNAL,
        name="y",
        start_ns=0,
        end_ns=1,
    )
    skewed = client(t, root, "shop", "/late", 5, 50)
    report = summarize_traces([root, root, orphan, a, b, skewed])
    whats = " | ".join(g.what for g in report.gaps)
    assert "parent of 1 spans" in whats
    assert "2 spans in parent cycles" in whats
    assert "1 duplicate spans" in whats
    assert "timing of 1 spans" in whats


def test_sampling_ratio_scales_totals_not_ratios():
    report = summarize_traces(app_traces(2), sample_ratio=0.1)
    seq = next(e for e in report.endpoints if e.endpoint == "GET /seq")
    assert seq.estimated_requests == 20.0 and seq.amplification == 2.0
    assert any("head sampling" in g.what for g in report.gaps)


def test_union():
    assert clipped_union_ns([(0, 10), (5, 20), (30, 40)], 0, 35) == 25
    assert clipped_union_ns([], 0, 10) == 0


def test_rows_give_the_report_of_the_records():
    """summarize_span_rows of span_row tuples is summarize_traces of the records (the CLI's file path),
    broken trees included; walk_rows is walk_spans."""
    from loopscope.analysis.traces import summarize_span_rows, walk_spans
    from loopscope.analysis.traces.walk import span_row, walk_rows

    spans = app_traces(3)
    root = server("t9", None, "shop", "/x", 0, 10)
    orphan = span("t9", root, "shop", SpanKind.CLIENT, "GET", 1, 2, target="/p?q=1")
    orphan = SpanRecord(
        **{**{f: getattr(orphan, f) for f in orphan.__slots__}, "parent_id": "f" * 16}
    )
    spans += [root, root, orphan, client("t9", root, "shop", "/y", 20, 30, port=9)]
    rows = [span_row(s) for s in spans]
    assert summarize_span_rows(rows, sample_ratio=0.5) == summarize_traces(spans, sample_ratio=0.5)
    assert walk_rows(rows) == walk_spans(spans)
    assert rows[-1][5] == "GET /y"  # the endpoint of a client span: its path


def test_endpoint_from_and_endpoint_of():
    from loopscope.analysis.traces.walk import endpoint_from, endpoint_of

    assert endpoint_from(SpanKind.CLIENT, None, "GET", "/price?x=1") == "GET /price"
    assert endpoint_from(SpanKind.SERVER, "/o", None, None) == "/o"
    assert endpoint_from(SpanKind.INTERNAL, None, None, "/x") is None
    bare = span("t", None, "shop", SpanKind.CLIENT, "name", 0, 1, target="?q")
    assert endpoint_of(bare) == ""  # an empty path stays empty, not the span name

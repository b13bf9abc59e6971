"""Parsers of sockperf and iperf3 output, on outputs recorded on this host (sockperf 3.7, iperf 3.12)."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopscope.bench.compare import _cmp, parse_iperf3_json, parse_sockperf_output
from loopscope.errors import ParseError

FIX = Path(__file__).parent / "fixtures"


def test_sockperf_pingpong_recorded():
    r = parse_sockperf_output((FIX / "sockperf_pingpong_tcp.txt").read_text())
    assert r.observations == 30056
    assert r.avg_us == 18.271
    assert (r.p50_us, r.p90_us, r.p99_us, r.p999_us) == (16.741, 22.101, 35.255, 48.540)


def test_sockperf_missing_lines():
    with pytest.raises(ParseError):
        parse_sockperf_output("sockperf: ERROR: connection refused\n")


def test_iperf3_recorded():
    r = parse_iperf3_json((FIX / "iperf3_client.json").read_text())
    assert round(r.received_bytes_per_s / 1e9, 4) == 3.2049
    assert round(r.sent_bytes_per_s / 1e9, 4) == 3.2050


def test_iperf3_error_document_and_garbage():
    with pytest.raises(ParseError, match="unable to connect"):
        parse_iperf3_json('{"start": {}, "intervals": [], "end": {}, "error": "unable to connect"}')
    with pytest.raises(ParseError):
        parse_iperf3_json("not json")


def test_goal_evaluation():
    assert _cmp("tcp_rr_p50_us", "sockperf", 17.0, 16.0, "<= 1.10").meets_goal is True
    assert _cmp("tcp_rr_p50_us", "sockperf", 18.0, 16.0, "<= 1.10").meets_goal is False
    r = _cmp("tcp_stream_bytes_per_s", "iperf3", 3.0e9, 3.3e9, ">= 0.95")
    assert r.meets_goal is False and round(r.ratio, 3) == 0.909
    assert _cmp("x", "t", 1.0, 2.0, None).meets_goal is None


# --- fuzz: the reference tools' output is parsed, never trusted ---------------------------------


@given(st.text(max_size=300))
def test_fuzz_parse_sockperf_output(text: str) -> None:
    try:
        parse_sockperf_output(text)
    except ParseError:
        pass


@given(
    st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=8),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
            max_leaves=15,
        ).map(json.dumps),
    )
)
def test_fuzz_parse_iperf3_json(text: str) -> None:
    try:
        parse_iperf3_json(text)
    except ParseError:
        pass

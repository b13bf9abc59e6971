"""The OTLP/HTTP receiver on a real loopback socket: protobuf, JSON, gzip, Zipkin, refusals, bounds."""

from __future__ import annotations

import gzip
import http.client
import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from loopscope.errors import UsageError
from loopscope.traces.listen import parse_listen, receiver_gaps
from loopscope.traces.otlp import decode_otlp_json, hex_ids_to_base64, request_class
from loopscope.traces.receiver import OtlpReceiver

FIXTURES = Path(__file__).parent / "fixtures"
LINE = max((FIXTURES / "selfcall.otlp.jsonl").read_text().splitlines(), key=len)


def _protobuf() -> bytes:
    request = request_class()()
    json_format.ParseDict(hex_ids_to_base64(json.loads(LINE)), request)
    return request.SerializeToString()


def _post(rx, body, content_type, path="/v1/traces", **headers):
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
    conn.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
    resp = conn.getresponse()
    out = (resp.status, resp.read())
    conn.close()
    return out


def test_protobuf_json_gzip_and_zipkin_are_received():
    n = len(decode_otlp_json(json.loads(LINE)))
    zipkin = (FIXTURES / "selfcall.zipkin.json").read_bytes()
    with OtlpReceiver(port=0) as rx:
        assert _post(rx, _protobuf(), "application/x-protobuf")[0] == 200
        status, body = _post(rx, LINE.encode(), "application/json")
        assert (status, json.loads(body)) == (200, {})
        gz = gzip.compress(_protobuf())
        assert _post(rx, gz, "application/x-protobuf", **{"Content-Encoding": "gzip"})[0] == 200
        assert _post(rx, zipkin, "application/json", path="/api/v2/spans")[0] == 202
        stats = rx.stats()
    assert (stats.requests, stats.spans, stats.dropped_spans) == (4, 3 * n + 82, 0)


def test_refusals_are_counted_not_fatal():
    with OtlpReceiver(port=0, max_body_bytes=1000) as rx:
        assert _post(rx, b"{}", "application/json", path="/v1/metrics")[0] == 404
        assert _post(rx, b"\xff\x00garbage", "application/x-protobuf")[0] == 400
        assert _post(rx, b"[", "application/json")[0] == 400
        assert _post(rx, b"x" * 2000, "application/json")[0] == 413
        assert _post(rx, b"{}", "application/json", Host="evil.example:4318")[0] == 403
        assert _post(rx, b"{}", "application/json")[0] == 200
        stats = rx.stats()
    assert (stats.requests, stats.rejected_requests) == (1, 5)
    assert [g.what for g in receiver_gaps(stats)] == ["5 export requests"]


def test_full_receiver_drops_counts_and_tells_the_sender():
    n = len(decode_otlp_json(json.loads(LINE)))
    with OtlpReceiver(port=0, max_spans=n + 3) as rx:
        _post(rx, _protobuf(), "application/x-protobuf")
        status, body = _post(rx, _protobuf(), "application/x-protobuf")
        stats = rx.stats()
    answer = ExportTraceServiceResponse.FromString(body)
    assert (status, answer.partial_success.rejected_spans) == (200, n - 3)
    assert (stats.spans, stats.dropped_spans) == (n + 3, n - 3)
    assert "dropped" in receiver_gaps(stats)[0].reason


def test_busy_port_is_a_usage_error():
    with OtlpReceiver(port=0) as rx, pytest.raises(UsageError):
        OtlpReceiver(port=rx.port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:4318", ("127.0.0.1", 4318)), (":4318", ("127.0.0.1", 4318)),
     ("4318", ("127.0.0.1", 4318)), ("[::1]:4318", ("::1", 4318))],
)  # fmt: skip
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:", "host:x", "127.0.0.1:70000"])
def test_parse_listen_rejects(text):
    with pytest.raises(UsageError):
        parse_listen(text)

"""Reading the per-hop cost from ``loopscope bench --json`` documents (recorded shapes)."""

import json

import pytest

from loopscope.errors import ParseError
from loopscope.lab.calibrate import read_bench_hop_s

# the shape `loopscope bench --json` writes (report.cells[].summary.p50_ns), trimmed
BENCH_DOC = {
    "schema_version": 1,
    "command": "bench",
    "report": {
        "cells": [
            {"path": "call", "label": "function call", "size_bytes": 1, "summary": {"p50_ns": 60}},
            {
                "path": "tcp4",
                "label": "TCP 127.0.0.1",
                "size_bytes": 1,
                "summary": {"p50_ns": 13000},
            },
            {
                "path": "http-keepalive",
                "label": "HTTP/1.1 keep-alive",
                "size_bytes": 1,
                "summary": {"p50_ns": 98000},
            },
            {
                "path": "http-newconn",
                "label": "HTTP/1.1 new conn",
                "size_bytes": 65536,
                "summary": {"p50_ns": 900000},
            },
            {
                "path": "http-newconn",
                "label": "HTTP/1.1 new conn",
                "size_bytes": 1,
                "summary": {"p50_ns": 380000},
            },
        ]
    },
}


def test_prefers_http_new_connection_smallest_payload(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(BENCH_DOC))
    assert read_bench_hop_s(path) == pytest.approx(380e-6)


def test_falls_back_to_keepalive_then_tcp(tmp_path):
    doc = json.loads(json.dumps(BENCH_DOC))
    doc["report"]["cells"] = [c for c in doc["report"]["cells"] if c["path"] != "http-newconn"]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    assert read_bench_hop_s(path) == pytest.approx(98e-6)
    doc["report"]["cells"] = [c for c in doc["report"]["cells"] if not c["path"].startswith("http")]
    path.write_text(json.dumps(doc))
    assert read_bench_hop_s(path) == pytest.approx(13e-6)


def test_unusable_documents(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text("{not json")
    with pytest.raises(ParseError):
        read_bench_hop_s(path)
    path.write_text(
        json.dumps({"report": {"cells": [{"path": "unix", "summary": {"p50_ns": 9000}}]}})
    )
    with pytest.raises(ParseError):
        read_bench_hop_s(path)
    with pytest.raises(ParseError):
        read_bench_hop_s(tmp_path / "missing.json")


def test_recorded_bench_document():
    """Recorded with: loopscope bench --paths call,tcp4,http-keepalive,http-newconn --sizes 1
    --count 300 --no-throughput --json (this host, busy)."""
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "bench-http.json"
    assert read_bench_hop_s(fixture) == pytest.approx(1_490_943e-9)

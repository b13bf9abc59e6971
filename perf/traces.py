"""Benchmark: `loopscope traces` on many spans shaped like the real app's (tests/live/apps/otel_selfcall.py).

The spans: the 82 spans recorded from the Flask app under opentelemetry-instrument
(tests/unit/traces/fixtures/selfcall.otlp.jsonl: /seq, /fan, /none, /other), copied with new trace ids
and shifted times until there are ``--spans`` of them (default 1,000,000).

Measured (one process, in this order, wall clock with ``time.perf_counter``):

- ``analysis``: :func:`loopscope.analysis.traces.summarize_traces` over all the spans (goal <= 10 s for
  1M), after ``gc.freeze()`` as the CLI does, and the peak RSS of the process afterwards (spans held in memory included; goal <= 1 GB);
- ``otlp-json read``: :func:`loopscope.traces.read.read_spans` of a generated OTLP/JSON file of
  ``--file-spans`` spans (one ExportTraceServiceRequest per line, decoded with protobuf's json_format),
  per span;
- ``otlp-protobuf decode``: :func:`loopscope.traces.otlp.decode_otlp_protobuf` of the same requests
  serialized as protobuf (what the receiver does per POST), per span.

Usage: ``python perf/traces.py`` -> JSON on stdout and in perf/results/traces.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from google.protobuf import json_format  # noqa: E402  (after the sys.path line)

from loopscope.analysis.traces import summarize_traces  # noqa: E402  (after the sys.path line)
from loopscope.traces.otlp import (  # noqa: E402  (after the sys.path line)
    decode_otlp_protobuf,
    hex_ids_to_base64,
    request_class,
)
from loopscope.traces.read import read_spans  # noqa: E402  (after the sys.path line)

FIXTURE = ROOT / "tests" / "unit" / "traces" / "fixtures" / "selfcall.otlp.jsonl"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _copies(n_spans: int, template_len: int) -> int:
    return -(-n_spans // template_len)


def make_spans(n_spans: int) -> list:
    """At least ``n_spans`` SpanRecords (whole copies of the recorded traces): copy-numbered trace ids,
    1 ms apart per copy."""
    template = read_spans(FIXTURE).spans
    out = []
    for k in range(_copies(n_spans, len(template))):
        shift = k * 1_000_000
        prefix = f"{k:08x}"
        for s in template:
            out.append(
                dataclasses.replace(
                    s,
                    trace_id=prefix + s.trace_id[8:],
                    start_ns=s.start_ns + shift,
                    end_ns=s.end_ns + shift,
                )
            )
    return out


def make_otlp_lines(n_spans: int) -> list[str]:
    """OTLP/JSON request lines holding about ``n_spans`` spans (whole template copies)."""
    lines = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    per_copy = sum(
        len(ss["spans"]) for doc in lines for rs in doc["resourceSpans"] for ss in rs["scopeSpans"]
    )
    out = []
    for k in range(_copies(n_spans, per_copy)):
        docs = [json.loads(json.dumps(doc)) for doc in lines]  # deep copy
        for doc in docs:
            for rs in doc["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        span["traceId"] = f"{k:08x}" + span["traceId"][8:]
            out.append(json.dumps(doc))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--file-spans", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results" / "traces.json")
    args = parser.parse_args()

    t0 = time.perf_counter()
    spans = make_spans(args.spans)
    gen_s = time.perf_counter() - t0
    gc.freeze()  # as the CLI does: the spans read are permanent, collections need not walk them
    t0 = time.perf_counter()
    report = summarize_traces(spans)
    analysis_s = time.perf_counter() - t0
    rss_mb = _rss_mb()
    seq = next(e for e in report.endpoints if e.endpoint == "GET /seq")
    del spans

    lines = make_otlp_lines(args.file_spans)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = Path(f.name)
    t0 = time.perf_counter()
    got = read_spans(path)
    read_s = time.perf_counter() - t0
    file_bytes = path.stat().st_size
    path.unlink()
    bodies = []
    for line in lines:
        request = request_class()()
        json_format.ParseDict(hex_ids_to_base64(json.loads(line)), request)
        bodies.append(request.SerializeToString())
    t0 = time.perf_counter()
    decoded = sum(len(decode_otlp_protobuf(b)) for b in bodies)
    pb_s = time.perf_counter() - t0

    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "analysis": {
            "spans": report.spans,
            "traces": report.traces,
            "generate_s": round(gen_s, 2),
            "analysis_s": round(analysis_s, 2),
            "us_per_span": round(analysis_s / report.spans * 1e6, 2),
            "peak_rss_mb": round(rss_mb),
            "check_seq_amplification": seq.amplification,
        },
        "otlp_json_read": {
            "spans": len(got.spans),
            "file_mb": round(file_bytes / 1e6, 1),
            "read_s": round(read_s, 2),
            "us_per_span": round(read_s / len(got.spans) * 1e6, 1),
            "projected_1m_s": round(read_s / len(got.spans) * 1e6, 0),
        },
        "otlp_protobuf_decode": {
            "spans": decoded,
            "decode_s": round(pb_s, 2),
            "us_per_span": round(pb_s / decoded * 1e6, 1),
            "spans_per_s": round(decoded / pb_s),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

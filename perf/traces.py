"""Benchmark: `loopscope traces` on many spans shaped like the real app's (tests/live/apps/otel_selfcall.py),
and the OTLP/HTTP receiver over real HTTP.

The spans: the 82 spans recorded from the Flask app under opentelemetry-instrument
(tests/unit/traces/fixtures/selfcall.otlp.jsonl: /seq, /fan, /none, /other), copied with new trace ids
until there are ``--spans`` of them (default 1,000,000), written as OTLP/JSON (one
ExportTraceServiceRequest per line, the Collector's file exporter format; ~900 bytes a span).

Measured (wall clock, ``time.perf_counter``):

- ``read_and_analyse``: in a fresh child process, :func:`loopscope.traces.read.read_span_rows` of the
  1M-span file (OTLP/JSON straight to analysis rows, orjson when installed, the second half of the file
  in a forked reader on 2 CPUs), ``gc.freeze()`` and
  :func:`loopscope.analysis.traces.summarize_span_rows` with GC paused, as ``loopscope traces FILE`` does;
  wall and CPU seconds (user + system, the forked reader's included), the child's peak RSS and its
  forked reader's (goal: <= 10 s and <= 1 GB together);
- ``otlp_json_strict``: the official json_format path (``--strict``) on ``--strict-spans`` spans, per span;
- ``otlp_protobuf_decode``: :func:`loopscope.traces.otlp.decode_otlp_protobuf` of the same requests as
  protobuf (the receiver's work per POST), per span;
- ``receiver_http``: an :class:`~loopscope.traces.receiver.OtlpReceiver` in a child process; this process
  POSTs protobuf ``ExportTraceServiceRequest`` bodies of ``--batch`` spans (the SDK's default batch is
  512) over keep-alive HTTP/1.1 connections from ``--senders`` threads, paced to ``--rate`` spans/s for
  ``--seconds``; sent vs received (the receiver's own counters) vs dropped (receiver drops +
  partial_success rejections + failed POSTs).

Usage: ``python perf/traces.py`` -> JSON on stdout and in perf/results/traces.json
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

FIXTURE = ROOT / "tests" / "unit" / "traces" / "fixtures" / "selfcall.otlp.jsonl"
_TRACE_ID = re.compile(r'"traceId": "[0-9a-f]{8}')


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_otlp_file(path: Path, n_spans: int) -> int:
    """Whole copies of the recorded requests, each copy's trace ids prefixed with its number."""
    lines = [line for line in FIXTURE.read_text().splitlines() if line.strip()]
    per_copy = sum(line.count('"spanId"') for line in lines)
    copies = -(-n_spans // per_copy)
    with path.open("w") as f:
        for k in range(copies):
            prefix = f'"traceId": "{k:08x}'
            f.write("\n".join(_TRACE_ID.sub(prefix, line) for line in lines) + "\n")
    return copies * per_copy


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of its waited-for children (the reader's forked
    part)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def child_read_analyse(path: str) -> None:
    """In a fresh process: read + analyse as the CLI does (rows, 2 readers on 2 CPUs, GC paused for the
    analysis); JSON on stdout."""
    t0 = time.perf_counter()
    from loopscope.analysis.traces import summarize_span_rows
    from loopscope.traces.read import _default_workers, gc_paused, read_span_rows

    workers = _default_workers(Path(path))
    t1, c1 = time.perf_counter(), _cpu_s()
    got = read_span_rows(path)
    t2, c2 = time.perf_counter(), _cpu_s()
    gc.freeze()  # as the CLI does
    with gc_paused():
        report = summarize_span_rows(got.rows)
    t3, c3 = time.perf_counter(), _cpu_s()
    with open("/proc/loadavg", encoding="ascii") as fh:
        load = float(fh.read().split()[0])
    seq = next(e for e in report.endpoints if e.endpoint == "GET /seq")
    print(
        json.dumps(
            {
                "spans": report.spans,
                "traces": report.traces,
                "read_workers": workers,
                "import_s": round(t1 - t0, 2),
                "read_s": round(t2 - t1, 2),
                "analysis_s": round(t3 - t2, 2),
                "read_and_analysis_s": round(t3 - t1, 2),
                "read_cpu_s": round(c2 - c1, 2),
                "analysis_cpu_s": round(c3 - c2, 2),
                "read_and_analysis_cpu_s": round(c3 - c1, 2),
                "load_average_1m_after": load,
                "read_us_per_span": round((t2 - t1) / report.spans * 1e6, 2),
                "peak_rss_mb": round(_rss_mb()),
                "reader_child_peak_rss_mb": round(
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                ),
                "check_seq_amplification": seq.amplification,
                "gaps": len(report.gaps),
            }
        )
    )


def child_receiver() -> None:
    """In a child process: a receiver on 127.0.0.1:0; prints its port, then its stats on stdin EOF."""
    from loopscope.traces.receiver import OtlpReceiver

    with OtlpReceiver(port=0) as rx:
        print(rx.port, flush=True)
        sys.stdin.read()
        stats = rx.stats()
    print(json.dumps({k: getattr(stats, k) for k in stats.__dataclass_fields__}), flush=True)


def _bodies(batch: int) -> list[bytes]:
    """Protobuf requests of ``batch`` spans each, cut from the recorded spans (ids made unique)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

    from loopscope.traces.otlp import hex_ids_to_base64, request_class

    template = []
    for line in FIXTURE.read_text().splitlines():
        req = request_class()()
        json_format.ParseDict(hex_ids_to_base64(json.loads(line)), req)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    template.append((rs.resource, ss.scope, span))
    out = []
    for b in range(8):  # 8 distinct bodies, reused round-robin
        req = ExportTraceServiceRequest()
        groups: dict[int, ResourceSpans] = {}
        for i in range(batch):
            resource_, scope, span = template[(b * batch + i) % len(template)]
            rs = groups.get(id(resource_))
            if rs is None:
                rs = groups[id(resource_)] = req.resource_spans.add()
                rs.resource.CopyFrom(resource_)
                rs.scope_spans.add().scope.CopyFrom(scope)
            s = rs.scope_spans[0].spans.add()
            s.CopyFrom(span)
            s.trace_id = (b * batch + i).to_bytes(16, "big")
        out.append(req.SerializeToString())
    return out


def receiver_http(rate: int, seconds: float, batch: int, senders: int) -> dict[str, object]:
    """Paced protobuf POSTs to a receiver in a child process; sent vs received vs dropped."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    child = subprocess.Popen(
        [sys.executable, __file__, "--child-receiver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())
    bodies = _bodies(batch)
    lock = threading.Lock()
    counts = {"sent_spans": 0, "posts": 0, "failed_posts": 0, "rejected_spans": 0, "late_s": 0.0}
    interval_s = batch * senders / rate  # each sender posts one batch per interval
    start = time.perf_counter() + 0.2

    def sender(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        due = start + k * interval_s / senders
        while due < start + seconds:
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            body = bodies[n % len(bodies)]
            try:
                conn.request(
                    "POST",
                    "/v1/traces",
                    body,
                    {"Content-Type": "application/x-protobuf"},
                )
                resp = conn.getresponse()
                answer = resp.read()
                ok = resp.status == 200
                rejected = (
                    ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans
                    if ok
                    else 0
                )
            except (OSError, http.client.HTTPException):
                ok, rejected = False, 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                counts["sent_spans"] += batch
                counts["posts"] += 1
                counts["failed_posts"] += not ok
                counts["rejected_spans"] += rejected
                counts["late_s"] = max(counts["late_s"], time.perf_counter() - due)
            n += 1
            due += interval_s
        conn.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed_s = time.perf_counter() - start
    out, _ = child.communicate("", timeout=60)
    stats = json.loads(out.strip().splitlines()[-1])
    sent = counts["sent_spans"]
    return {
        "target_spans_per_s": rate,
        "seconds": seconds,
        "batch_spans": batch,
        "senders": senders,
        "posts": counts["posts"],
        "sent_spans": sent,
        "received_spans": stats["spans"],
        "dropped_spans": stats["dropped_spans"],
        "rejected_spans_told_to_sender": counts["rejected_spans"],
        "failed_posts": counts["failed_posts"],
        "rejected_requests": stats["rejected_requests"],
        "lost_spans": sent - stats["spans"],
        "achieved_spans_per_s": round(stats["spans"] / elapsed_s),
        "max_lateness_s": round(float(counts["late_s"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--strict-spans", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results" / "traces.json")
    parser.add_argument("--child-read-analyse", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--child-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_read_analyse:
        child_read_analyse(args.child_read_analyse)
        return
    if args.child_receiver:
        child_receiver()
        return

    from google.protobuf import json_format

    from loopscope.traces.otlp import decode_otlp_protobuf, hex_ids_to_base64, request_class
    from loopscope.traces.read import read_spans

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "spans.jsonl"
        write_otlp_file(big, args.spans)
        file_mb = big.stat().st_size / 1e6
        child = subprocess.run(
            [sys.executable, __file__, "--child-read-analyse", str(big)],
            check=True,
            capture_output=True,
            text=True,
        )
        read_analyse = {"file_mb": round(file_mb), **json.loads(child.stdout)}
        small = Path(tmp) / "small.jsonl"
        write_otlp_file(small, args.strict_spans)
        t0 = time.perf_counter()
        strict = read_spans(small, strict=True)
        strict_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast = read_spans(small)
        fast_s = time.perf_counter() - t0
        assert fast.spans == strict.spans
        lines = small.read_text().splitlines()
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
        "read_and_analyse": read_analyse,
        "otlp_json_strict": {
            "spans": len(strict.spans),
            "strict_us_per_span": round(strict_s / len(strict.spans) * 1e6, 1),
            "fast_us_per_span": round(fast_s / len(fast.spans) * 1e6, 1),
            "same_spans": True,
        },
        "otlp_protobuf_decode": {
            "spans": decoded,
            "us_per_span": round(pb_s / decoded * 1e6, 1),
            "spans_per_s": round(decoded / pb_s),
        },
        "receiver_http": receiver_http(args.rate, args.seconds, args.batch, args.senders),
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: loopscope's TCP paths against sockperf and iperf3, side by side, medians of rounds.

Goals (issue 5): loopscope's TCP request/response p50 within 1.10x of the reference tool on the same
path and pinning (netperf TCP_RR in the issue; netperf is not packaged in Debian, so sockperf
ping-pong, the same blocking 1-outstanding-message exchange, stands in), and TCP stream throughput
>= 0.95x iperf3.

Each round runs, for each pin mode, back to back: loopscope TCP RR on 127.0.0.1 (14-byte messages,
sockperf's minimum), ``sockperf ping-pong --tcp --full-rtt``, loopscope TCP stream (128 KiB sends),
``iperf3`` (128 KiB sends, receiver rate). A ratio is taken within each round (same moment of a noisy
shared machine), and the figure reported is the median of the per-round ratios, next to the medians
of the raw values. Optionally (``--paths-table``) one full ``run_bench`` per pin mode is recorded too.

Writes JSON to ``--out`` (default perf/results/paths.json).

Usage: ``python perf/paths.py --rounds 5 --seconds 1 --pins same,different``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from loopscope.analysis.bench.results import BenchConfig, PinMode
from loopscope.bench.compare import run_compare
from loopscope.bench.paths import PATHS
from loopscope.bench.runner import choose_cpus, run_bench
from loopscope.render.jsonable import to_jsonable

GOALS = {"tcp_rr_p50_us": ("<=", 1.10), "tcp_stream_bytes_per_s": (">=", 0.95)}


def _round(pin: PinMode, seconds: int) -> dict[str, Any]:
    client_cpu, server_cpu = choose_cpus(pin)
    results, notes = run_compare(
        client_cpu=client_cpu,
        server_cpu=server_cpu,
        rr_duration_s=seconds,
        stream_duration_s=seconds,
    )
    return {
        "pin": pin.value,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
        "results": to_jsonable(results),
        "notes": notes,
    }


def _summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pin in sorted({r["pin"] for r in rounds}):
        by_metric: dict[str, list[dict[str, Any]]] = {}
        for r in rounds:
            if r["pin"] != pin:
                continue
            for res in r["results"]:
                by_metric.setdefault(res["metric"], []).append(res)
        out[pin] = {}
        for metric, rs in by_metric.items():
            ratio = statistics.median(x["ratio"] for x in rs)
            entry = {
                "tool": rs[0]["tool"],
                "rounds": len(rs),
                "loopscope_median": statistics.median(x["loopscope_value"] for x in rs),
                "tool_median": statistics.median(x["tool_value"] for x in rs),
                "ratio_median": ratio,
                "ratios": [round(x["ratio"], 4) for x in rs],
            }
            if metric in GOALS:
                op, limit = GOALS[metric]
                entry["goal"] = f"{op} {limit}"
                entry["meets_goal"] = ratio <= limit if op == "<=" else ratio >= limit
            out[pin][metric] = entry
    return out


def _paths_table(pin: PinMode, count: int) -> dict[str, Any]:
    cfg = BenchConfig(
        paths=PATHS,
        sizes_bytes=(1, 1024, 65536, 1048576),
        count=count,
        duration_s=2.0,
        pin=pin,
        throughput_s=1.0,
    )
    report = run_bench(cfg)
    return to_jsonable(report)  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=1, help="per tool run (RR and stream)")
    ap.add_argument("--pins", default="same,different")
    ap.add_argument("--paths-table", action="store_true", help="also one full run_bench per pin")
    ap.add_argument("--count", type=int, default=2000, help="round trips per cell of the table")
    ap.add_argument("--out", default="perf/results/paths.json")
    args = ap.parse_args()
    pins = [PinMode(p.strip()) for p in args.pins.split(",")]
    started = time.time()
    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        for pin in pins:
            r = _round(pin, args.seconds)
            r["round"] = i
            rounds.append(r)
            brief = ", ".join(f"{x['metric']} {x['ratio']:.3f}" for x in r["results"])
            print(f"round {i} pin {pin.value}: {brief}", file=sys.stderr)
    summary = _summarize(rounds)
    doc: dict[str, Any] = {
        "benchmark": "paths",
        "host": {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": sorted(os.sched_getaffinity(0)),
            "loadavg": os.getloadavg(),
        },
        "settings": vars(args),
        "summary": summary,
        "rounds": rounds,
    }
    if args.paths_table:
        doc["paths_table"] = {pin.value: _paths_table(pin, args.count) for pin in pins}
    doc["elapsed_s"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    for pin, metrics in summary.items():
        for metric, e in metrics.items():
            goal = (
                f"  goal {e['goal']}: {'met' if e['meets_goal'] else 'MISSED'}"
                if "goal" in e
                else ""
            )
            print(
                f"pin {pin:9} {metric:24} loopscope {e['loopscope_median']:.4g}  "
                f"{e['tool']} {e['tool_median']:.4g}  ratio {e['ratio_median']:.3f}{goal}"
            )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

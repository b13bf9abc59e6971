"""Benchmark of the simulation engines: 1M external requests with fan-out 2 (goal: <= 10 s), and the
fast engine against the simpy reference model side by side on the same smaller scenario.

Usage: python perf/simulate.py [--requests 1000000] [--rounds 3] [--out FILE] [--designs a,b]
Writes one JSON document (stdout, or --out). Wall and CPU (process) times are both reported: the host
is shared, so CPU time is the better estimate of an idle machine's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from loopscope.sim.engine import simulate_fast
from loopscope.sim.model import simulate_simpy
from loopscope.sim.result import SimResult
from loopscope.sim.scenario import Scenario, ServiceDist, make_design
from loopscope.sim.sweep import capacity_per_s

GOAL_S = 10.0
# fraction of each design's in-process capacity to run at: below every knee, so the runs do the full
# work (a collapsed self-call run is cheap and would flatter the engine; at 30% of capacity a 1M run
# of self-calls does collapse: one burst deadlocks the pool and it never recovers)
LOAD = {"none": 0.7, "inprocess": 0.7, "pool": 0.6, "async": 0.6, "lb": 0.2, "selfcall": 0.15}


def scenario(design: str, requests: int) -> Scenario:
    root = make_design(design, fanout=2, work=ServiceDist(mean_s=0.010))
    ref = make_design("inprocess", fanout=2, work=ServiceDist(mean_s=0.010))
    rate = LOAD[design] * capacity_per_s(ref, 8, 2)
    return Scenario(
        root=root,
        instances=2,
        workers=8,
        pool_workers=8,
        arrival_rate_per_s=rate,
        requests=requests,
        call_timeout_s=1.0,
        request_timeout_s=2.0,
        hop_s=0.0003,
        seed=1,
    )


def timed(fn: Callable[[Scenario], SimResult], sc: Scenario) -> tuple[float, float, SimResult]:
    w0, c0 = time.perf_counter(), time.process_time()
    res = fn(sc)
    return time.perf_counter() - w0, time.process_time() - c0, res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=1, help="rounds of the 1M runs (medians)")
    ap.add_argument("--anchor-requests", type=int, default=20_000)
    ap.add_argument("--anchor-rounds", type=int, default=3)
    ap.add_argument("--designs", default="pool,selfcall,lb,async,inprocess,none")
    ap.add_argument("--out")
    args = ap.parse_args()
    designs = [d for d in args.designs.split(",") if d]
    doc: dict[str, Any] = {
        "schema_version": 1,
        "bench": "simulate",
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        },
        "goal": f"{args.requests} external requests, fan-out 2, in <= {GOAL_S} s",
        "big_runs": [],
        "anchor": [],
    }
    for design in designs:
        sc = scenario(design, args.requests)
        rounds = [timed(simulate_fast, sc) for _ in range(args.rounds)]
        wall = statistics.median(r[0] for r in rounds)
        cpu = statistics.median(r[1] for r in rounds)
        res = rounds[0][2]
        doc["big_runs"].append(
            {
                "design": design,
                "requests": args.requests,
                "fanout": 2,
                "instances": 2,
                "workers": 8,
                "rate_per_s": round(sc.arrival_rate_per_s, 1),
                "engine": "fast",
                "wall_s_median": round(wall, 2),
                "cpu_s_median": round(cpu, 2),
                "rounds": args.rounds,
                "external_per_wall_s": round(args.requests / wall),
                "goal_met_wall": wall <= GOAL_S,
                "goal_met_cpu": cpu <= GOAL_S,
                "ok": res.ok,
                "p99_ms": round(1000 * (res.latency.p99_s if res.latency else 0), 2),
                "utilisation_pct": round(res.utilisation_pct, 1),
                "deadlock_episodes": res.deadlock_episodes,
            }
        )
        print(f"{design}: 1M in {wall:.2f} s wall, {cpu:.2f} s cpu", file=sys.stderr)
    for design in designs:
        sc = scenario(design, args.anchor_requests)
        fast_runs, simpy_runs = [], []
        for _ in range(args.anchor_rounds):  # interleaved, side by side
            fast_runs.append(timed(simulate_fast, sc))
            simpy_runs.append(timed(simulate_simpy, sc))
        f_cpu = statistics.median(r[1] for r in fast_runs)
        s_cpu = statistics.median(r[1] for r in simpy_runs)
        f_res, s_res = fast_runs[0][2], simpy_runs[0][2]
        doc["anchor"].append(
            {
                "design": design,
                "requests": args.anchor_requests,
                "fast_cpu_s_median": round(f_cpu, 3),
                "simpy_cpu_s_median": round(s_cpu, 3),
                "speedup": round(s_cpu / f_cpu, 2),
                "same_result": f_res.ok == s_res.ok and f_res.latency == s_res.latency,
                "p99_ms_fast": round(1000 * (f_res.latency.p99_s if f_res.latency else 0), 3),
                "p99_ms_simpy": round(1000 * (s_res.latency.p99_s if s_res.latency else 0), 3),
            }
        )
        print(f"{design}: simpy/fast = {s_cpu / f_cpu:.1f}x", file=sys.stderr)
    doc["host"]["loadavg_end"] = os.getloadavg()
    text = json.dumps(doc, indent=2)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

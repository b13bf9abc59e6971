"""Benchmark: socket enumeration with process attribution, loopscope vs ss vs psutil, in one run.

Opens N established loopback connections (both ends held open, so 2N sockets) spread over worker
processes (the open-file limit here is 20000 per process and cannot be raised), then times whole
processes, medians of ``--rounds`` rounds, in the same run:

- ``loopscope snapshot``: ``python -c "take_snapshot()"`` (sock_diag dump + /proc fd scan + owners)
- ``loopscope ports --json``: the whole CLI process
- ``ss -tanp`` and ``ss -tan``
- ``psutil.net_connections("tcp")`` in a Python process

Peak RSS comes from ``os.wait4`` of each child. Writes JSON to ``--out`` (default perf/results/snapshot.json).

Usage: ``python perf/snapshot.py --sizes 1000,10000,50000 --rounds 5``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PER_WORKER = 8000  # connections per worker: 16000 fds, under the 20000 limit

WORKER = r"""
import os, socket, sys
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4096)
port = srv.getsockname()[1]
keep = []
pending = 0
for i in range(n):
    c = socket.socket(); c.connect(("127.0.0.1", port)); keep.append(c)
    pending += 1
    if pending >= 1000 or i == n - 1:
        for _ in range(pending):
            a, _ = srv.accept(); keep.append(a)
        pending = 0
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.read()
"""

COMMANDS = {
    "loopscope snapshot": [
        sys.executable,
        "-c",
        "from loopscope.collect import take_snapshot; take_snapshot()",
    ],
    "loopscope ports --json": [
        sys.executable,
        "-m",
        "loopscope",
        "ports",
        "--json",
        "--fail-on",
        "never",
    ],
    "ss -tanp": ["ss", "-tanp"],
    "ss -tan": ["ss", "-tan"],
    "psutil.net_connections": [
        sys.executable,
        "-c",
        "import psutil; psutil.net_connections('tcp')",
    ],
}


def start_workers(n: int) -> list[subprocess.Popen[str]]:
    """Start workers holding ``n`` connections in total; returns when all are established."""
    workers = []
    left = n
    while left > 0:
        k = min(PER_WORKER, left)
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(k)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        left -= k
    for w in workers:
        assert w.stdout is not None
        if w.stdout.readline().strip() != "ready":
            raise RuntimeError("worker failed")
    return workers


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    """Close stdin, kill, reap."""
    for w in workers:
        if w.stdin:
            w.stdin.close()
        w.kill()
    for w in workers:
        w.wait()


def run_once(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} exited {proc.returncode}")
    return wall, usage.ru_maxrss


def count_sockets() -> int:
    """TCP sockets in this namespace (ss -tanH line count)."""
    return len(subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "snapshot.json"))
    args = parser.parse_args()
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        workers = start_workers(n)
        try:
            sockets = count_sockets()
            timings: dict[str, list[float]] = {name: [] for name in COMMANDS}
            rss: dict[str, int] = {name: 0 for name in COMMANDS}
            for _ in range(args.rounds):  # interleaved so that machine noise hits every tool alike
                for name, cmd in COMMANDS.items():
                    wall, peak = run_once(cmd)
                    timings[name].append(wall)
                    rss[name] = max(rss[name], peak)
            row = {
                "connections": n,
                "tcp_sockets": sockets,
                "median_s": {k: round(statistics.median(v), 4) for k, v in timings.items()},
                "all_s": {k: [round(x, 4) for x in v] for k, v in timings.items()},
                "peak_rss_mib": {k: round(v / 1024, 1) for k, v in rss.items()},
            }
            med = row["median_s"]
            row["ratios"] = {
                "snapshot / ss -tanp": round(med["loopscope snapshot"] / med["ss -tanp"], 3),
                "snapshot / psutil": round(
                    med["loopscope snapshot"] / med["psutil.net_connections"], 3
                ),
                "ports --json / ss -tanp": round(
                    med["loopscope ports --json"] / med["ss -tanp"], 3
                ),
            }
            results.append(row)
            print(
                json.dumps(
                    {
                        k: row[k]
                        for k in (
                            "connections",
                            "tcp_sockets",
                            "median_s",
                            "ratios",
                            "peak_rss_mib",
                        )
                    }
                ),
                flush=True,
            )
        finally:
            stop_workers(workers)
        time.sleep(1)
    doc = {
        "benchmark": "snapshot",
        "host": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        },
        "rounds": args.rounds,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

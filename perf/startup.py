"""Benchmark: what a `ports --json` start-up cannot go below with loopscope's record model.

Issue #11 asks for the whole ``loopscope ports --json`` process in <= 60 ms at 1k sockets. This
script times, as whole processes under ``python -S`` (no site hooks; the import path given in
PYTHONPATH), medians of ``--rounds`` interleaved rounds with 1k loopback connections open:

- ``python -S -c pass``: the interpreter alone
- ``stdlib``: importing what the records need (dataclasses, typing, enum, ipaddress, socket)
- ``stdlib + records``: the same, then creating as many frozen slotted kw_only dataclasses, with the
  same field counts, as ``ports --json`` creates at import (counted from the loaded modules)
- ``fd scan``: the interpreter plus one ``readlink`` of every ``/proc/*/fd/*`` (how the owner of a
  socket is found; ``ss -p`` does the same)
- ``loopscope ports --json`` and ``ss -ltnup``

The first three cost nothing loopscope-specific but the shape of its records
(CONVENTIONS.md: ``@dataclass(frozen=True, slots=True, kw_only=True)``); ``ports --json`` forks the fd
walk before its imports, so the walk overlaps them and the floor of `ports --json` on this record model
is the larger of ``stdlib + records`` and ``fd scan``. Writes JSON to ``--out`` (default
perf/results/startup.json).

Usage: ``python perf/startup.py --connections 1000 --rounds 21``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import snapshot  # the farm and the no-site environment of perf/snapshot.py

COUNT_RECORDS = r"""
import dataclasses, json, os, sys
from loopscope.cli import fastpath
fd = os.dup(1); os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
fastpath.run_fast(["ports", "--json", "--fail-on", "never"])
os.dup2(fd, 1)
fields = [len(dataclasses.fields(v)) for n, m in list(sys.modules.items()) if n.startswith("loopscope")
          for v in vars(m).values()
          if isinstance(v, type) and dataclasses.is_dataclass(v) and v.__module__ == n]
print(json.dumps(fields))
"""

STDLIB = "import dataclasses, typing, enum, ipaddress, socket"

RECORDS = r"""
import dataclasses, typing, enum, ipaddress, socket
for i, n in enumerate(FIELDS):
    ns = {"__annotations__": {f"f{j}": "int" for j in range(n)}, "__doc__": "x"}
    dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(type(f"R{i}", (), ns))
"""

FD_SCAN = r"""
import os
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    pass
        except OSError:
            pass
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "startup.json"))
    args = parser.parse_args()
    snapshot.raise_nofile()
    snapshot.compile_package()
    py = sys.executable
    snapshot.wait_time_wait_gone()
    workers = snapshot.start_workers(args.connections)
    try:
        fields = json.loads(
            subprocess.run(
                [py, "-S", "-c", COUNT_RECORDS],
                env=snapshot.NO_SITE_ENV,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        commands = {
            "python -S -c pass": [py, "-S", "-c", "pass"],
            "stdlib": [py, "-S", "-c", STDLIB],
            "stdlib + records": [py, "-S", "-c", f"FIELDS = {fields!r}\n{RECORDS}"],
            "fd scan": [py, "-S", "-c", FD_SCAN],
            "loopscope ports --json": [
                *(*snapshot.CLI_NO_SITE, "ports", "--json", "--fail-on", "never")
            ],
            "ss -ltnup": ["ss", "-ltnup"],
        }
        sockets = snapshot.count_sockets()
        load_before = os.getloadavg()
        timings: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                timings[name].append(snapshot.run_once(cmd)[0])
    finally:
        snapshot.stop_workers(workers)
    med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
    floor = max(med["stdlib + records"], med["fd scan"])
    doc = {
        "benchmark": "startup",
        "host": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "connections": args.connections,
        "tcp_sockets": sockets,
        "rounds": args.rounds,
        "record_classes": len(fields),
        "record_fields": fields,
        "median_ms": {k: round(v, 1) for k, v in med.items()},
        "all_ms": {k: [round(x * 1000, 1) for x in v] for k, v in timings.items()},
        "floor_ms": round(floor, 1),
        "floor": "max(stdlib + records, fd scan): ports --json forks the walk before its imports",
        "above_floor_ms": round(med["loopscope ports --json"] - floor, 1),
        "goal_ms": 60,
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(
        json.dumps(
            {k: doc[k] for k in ("record_classes", "median_ms", "floor_ms", "above_floor_ms")}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

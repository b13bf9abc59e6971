"""Benchmark: whole loopscope commands and the snapshot under them, vs ss and psutil, in one run.

Opens N established loopback connections (both ends held open, so 2N sockets) spread over worker
processes (the open-file limit here is 20000 per process and cannot be raised), then times whole
processes, medians of ``--rounds`` rounds, in the same run:

- ``loopscope snapshot``: ``python -c "take_snapshot()"`` (sock_diag dump + /proc fd scan + owners)
- whole CLI processes: ``loopscope ports --json``, ``map``, ``scan``, ``map --json``, ``scan --json``
- ``ss -tanp`` and ``ss -tan``; ``ss -ltnup`` (what ``ports`` answers)
- ``psutil.net_connections("tcp")`` in a Python process
- ``python -c pass``: the interpreter start-up every Python command pays
- ``ports --json`` and ``python -c pass`` again under ``python -S`` (no site hooks, the import path
  given in PYTHONPATH): start-up on a plain interpreter, whatever this host's site imports

Before timing, the loopscope package is byte-compiled (``compileall``), as ``pip install`` leaves it:
a host with ``PYTHONDONTWRITEBYTECODE=1`` and no ``.pyc`` would otherwise compile ~7k lines in every
command (~30 ms here) and the figures would measure the compiler. Peak RSS comes from ``os.wait4`` of
each child. Also, per size, the talk map analysis alone
(``build_talk_map`` on one snapshot, median of at least 7 runs in one process, more at small sizes
until they add up to 0.5 s, at most 101) per connection, to show it grows
linearly, and the load average before and after the rounds. Writes JSON to ``--out`` (default
perf/results/snapshot.json).

Usage: ``python perf/snapshot.py --sizes 1000,10000,50000 --rounds 5``; ``--only-analysis``: the
analysis alone per size, with its Python calls per connection (one cProfile run: the work done, which
a linear analysis keeps constant), the snapshot's size in memory (tracemalloc) and a floor timed the
same way: a minimal hash join of the same sockets (one dict keyed by both ends, one tuple per
connection), which shows what the growing working set does per connection to any dict-based pairing
in Python. Written to perf/results/analysis.json. Each size starts once the previous one's TIME_WAIT
sockets are gone.
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


def _console_script() -> str | None:
    """The ``loopscope`` console script beside this interpreter (what users run), if installed."""
    path = Path(sys.executable).with_name("loopscope")
    return str(path) if path.is_file() else None


_SCRIPT = _console_script()
CLI = [sys.executable, _SCRIPT] if _SCRIPT else [sys.executable, "-m", "loopscope"]
"""How a command is run: the console script under this interpreter (``-m loopscope`` adds runpy,
~5 ms, which users of the script do not pay), or ``-m`` when no script is installed."""
CLI_NO_SITE = [CLI[0], "-S", *CLI[1:]]

COMMANDS = {
    "loopscope snapshot": [
        sys.executable,
        "-c",
        "from loopscope.collect import take_snapshot; take_snapshot()",
    ],
    "loopscope ports --json": [
        *CLI,
        "ports",
        "--json",
        "--fail-on",
        "never",
    ],
    "loopscope map": [*CLI, "map", "--fail-on", "never"],
    "loopscope scan": [*CLI, "scan", "--fail-on", "never"],
    "loopscope map --json": [
        *CLI,
        "map",
        "--json",
        "--fail-on",
        "never",
    ],
    "loopscope scan --json": [
        *CLI,
        "scan",
        "--json",
        "--fail-on",
        "never",
    ],
    "ss -tanp": ["ss", "-tanp"],
    "ss -ltnup": ["ss", "-ltnup"],
    "ss -tan": ["ss", "-tan"],
    "psutil.net_connections": [
        sys.executable,
        "-c",
        "import psutil; psutil.net_connections('tcp')",
    ],
    "python -c pass": [sys.executable, "-c", "pass"],
    # Without site (-S): no .pth hooks. A host's site may import modules at every start (here a
    # sandbox hook imports certifi, which loads pathlib, re, typing and more, ~20-35 ms) that
    # loopscope then finds loaded; -S shows what the command costs on a plain interpreter.
    "loopscope ports --json (python -S)": [
        *CLI_NO_SITE,
        "ports",
        "--json",
        "--fail-on",
        "never",
    ],
    "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
}
NO_SITE_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path[1:] if p)}
"""Environment of the ``-S`` commands: the import path site would have built, made explicit."""

ANALYSIS = r"""
import cProfile, gc, json, pstats, statistics, time, tracemalloc
from loopscope.collect import take_snapshot
from loopscope.analysis.talkmap import build_talk_map
tracemalloc.start()
snap = take_snapshot()
held = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
runs = []
while len(runs) < 7 or (sum(runs) < 0.5 and len(runs) < 101):  # small sizes: more runs, less noise
    gc.collect()
    t0 = time.perf_counter()
    talk = build_talk_map(snap)
    runs.append(time.perf_counter() - t0)
prof = cProfile.Profile()
prof.enable()
build_talk_map(snap)
prof.disable()


def hash_join(sockets):
    # The floor: pair every connected socket with its peer through one dict, keyed by an int made of
    # both ends (address object ids and ports), and keep one small tuple per connection. Any
    # dict-based pairing in Python does at least this; it is not the talk map's algorithm.
    ends = {}
    for s in sockets:
        local, remote = s.local, s.remote
        if remote.port:
            ends[(id(local.address) << 16 | local.port) << 64
                 | id(remote.address) << 16 | remote.port] = s
    left = dict(ends)
    pop, out, low = left.pop, [], (1 << 64) - 1
    for key, s in ends.items():
        if key in left:
            peer = pop((key & low) << 64 | key >> 64, None)
            out.append((s.owners, peer.owners if peer is not None else (), s.state))
    return len(out)


floor = []
while len(floor) < len(runs):
    gc.collect()
    t0 = time.perf_counter()
    pairs = hash_join(snap.sockets)
    floor.append(time.perf_counter() - t0)
print(json.dumps({"sockets": len(snap.sockets), "connections": len(talk.connections),
                  "median_s": statistics.median(runs),
                  "runs": len(runs), "calls": pstats.Stats(prof).total_calls, "snapshot_bytes": held,
                  "floor_median_s": statistics.median(floor), "floor_pairs": pairs}))
"""


def measure_analysis() -> dict[str, float]:
    """The talk map analysis alone on one snapshot of this host: seconds and us per connection."""
    out = subprocess.run(
        [sys.executable, "-c", ANALYSIS], capture_output=True, text=True, check=True
    ).stdout
    got = json.loads(out)
    conns = max(got["connections"], 1)
    got["us_per_connection"] = round(got["median_s"] / conns * 1e6, 2)
    got["floor_us_per_connection"] = round(got.pop("floor_median_s") / conns * 1e6, 2)
    got["calls_per_connection"] = round(got.pop("calls") / conns, 2)
    got["snapshot_mib"] = round(got.pop("snapshot_bytes") / 2**20, 1)
    got["median_s"] = round(got["median_s"], 4)
    return got


def wait_time_wait_gone(limit_s: float = 90) -> None:
    """Wait (bounded) until the previous size's TIME_WAIT sockets have expired: they would count."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-tanH", "state", "time-wait"], capture_output=True, text=True)
        if out.stdout.count("\n") < 100:
            return
        time.sleep(2)


def compile_package() -> str:
    """Byte-compile the loopscope package (``__pycache__`` next to the sources); returns its path."""
    import compileall

    import loopscope

    root = str(Path(loopscope.__file__).parent)
    if not compileall.compile_dir(root, quiet=1):
        raise RuntimeError(f"compileall failed for {root}")
    return root


def raise_nofile() -> None:
    """Raise the soft open-file limit to the hard one (workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
    env = NO_SITE_ENV if "-S" in cmd[1:2] else None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
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
    parser.add_argument("--out", default=None, help="default perf/results/snapshot.json")
    parser.add_argument(
        "--only-analysis",
        action="store_true",
        help="the talk map analysis alone per size (time, calls per connection, snapshot size); "
        "default --out perf/results/analysis.json",
    )
    args = parser.parse_args()
    results_dir = Path(__file__).parent / "results"
    if args.out is None:
        args.out = str(results_dir / ("analysis.json" if args.only_analysis else "snapshot.json"))
    raise_nofile()
    package = compile_package()
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        wait_time_wait_gone()
        workers = start_workers(n)
        try:
            sockets = count_sockets()
            load_before = os.getloadavg()
            analysis = measure_analysis()
            if args.only_analysis:
                row = {"connections": n, "tcp_sockets": sockets, "analysis": analysis}
                row["load_average"] = [round(x, 2) for x in os.getloadavg()]
                results.append(row)
                print(json.dumps(row), flush=True)
                continue
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
                "analysis": analysis,
                "load_average": {
                    "before": [round(x, 2) for x in load_before],
                    "after": [round(x, 2) for x in os.getloadavg()],
                },
            }
            med = row["median_s"]
            ss, ps = med["ss -tanp"], med["psutil.net_connections"]
            row["ratios"] = {
                **{
                    f"{cmd} / ss -tanp": round(med[f"loopscope {cmd}"] / ss, 3)
                    for cmd in ("map", "scan", "map --json", "scan --json")
                },
                **{
                    f"{cmd} / psutil": round(med[f"loopscope {cmd}"] / ps, 3)
                    for cmd in ("map", "scan")
                },
                "snapshot / ss -tanp": round(med["loopscope snapshot"] / med["ss -tanp"], 3),
                "snapshot / psutil": round(
                    med["loopscope snapshot"] / med["psutil.net_connections"], 3
                ),
                "ports --json / ss -tanp": round(
                    med["loopscope ports --json"] / med["ss -tanp"], 3
                ),
                "ports --json / ss -ltnup": round(
                    med["loopscope ports --json"] / med["ss -ltnup"], 3
                ),
                "ports --json / python -c pass": round(
                    med["loopscope ports --json"] / med["python -c pass"], 3
                ),
                "ports --json (python -S) / python -S -c pass": round(
                    med["loopscope ports --json (python -S)"] / med["python -S -c pass"], 3
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
                            "analysis",
                            "load_average",
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
        "bytecode": f"compiled before timing (compileall {package})",
        "cli": CLI,
        "rounds": "analysis: see runs per size" if args.only_analysis else args.rounds,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: what does ``loopscope exporter`` cost, and does it stay bounded?

Workload (in a fresh network namespace, so other traffic on the host does not mix into the snapshot):
a server on 127.0.0.1:8080 (accept, read, reply, close) and a client making COUNT connect -> request ->
reply -> close cycles at RATE per second, recording each cycle's duration (the method of perf/watch.py).

Measured, side by side in one run:
- extra median connection latency at 300 and 3,000 connections/s with the exporter off
  (``baseline``), with only the in-kernel counter attached and never read (``kernel``), and with the
  exporter scraped every ``--scrape-interval`` seconds, counting connected sockets at every scrape
  (``exporter``); the three phases interleaved ``--repeats`` times, medians of the run medians;
- exporter CPU % of one core at those rates (its own rusage over the workload's wall time);
- scrape duration with 10,000 sockets open in a namespace of their own (5,000 connected loopback
  pairs), the listener on port 8080 or on an ephemeral port, counts every 1 s and at the default
  30 s: median and p99 of every scrape and of the scrapes that coincide with a counting pass, and
  the duration of the counting passes themselves;
- RSS of the exporter before and after ``--many`` connections (kernel counting: it should be flat);
- series in the exposition after 10,000 distinct short-lived clients (each a forked process with its
  own comm): bounded by ``max_client_apps`` (200) + ``other``.

Run as root: ``python perf/exporter.py [--quick] [--out perf/results/exporter.json]``; the RSS phase
alone: ``python perf/exporter.py --only-rss --out perf/results/exporter_rss.json``; the scrape phases
alone: ``--only-scrape --out perf/results/exporter_scrape.json`` (with ``PYTHONPATH`` at an older
tree's ``src``, that tree's collector: a before/after); the kernel cost of the client endpoint map
(``--http``): ``--only-client-map --out perf/results/exporter_client_map.json``; the kernel's table
walk, two v2 dumps against one v1 compat dump: ``--only-dump-walk --out
perf/results/exporter_dump_walk.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

SERVER = r"""
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 8080)); s.listen(4096)  # a fresh namespace: 8080 is free
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.recv(64); c.sendall(b"pong"); c.close()
"""

CLIENT = r"""
import json, socket, sys, time
port, count, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
durs, starts = [], []
start = time.monotonic()
for i in range(count):
    d = start + i / rate - time.monotonic()
    if d > 0:
        time.sleep(d)
    t0 = time.monotonic_ns()
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"ping"); c.recv(64); c.close()
    durs.append(time.monotonic_ns() - t0)
    starts.append(t0)
print(json.dumps({"durs_ns": durs, "starts_ns": starts, "wall_s": time.monotonic() - start}), flush=True)
"""

# The exporter's collector in a child (as `loopscope exporter` runs it: started, so the counts are
# made by its thread), scraped on a timer; prints its CPU, RSS, scrape durations and the time spans of
# the counting passes when stdin closes. Runs an older tree too (PYTHONPATH: counted in the scrape),
# for a before/after: there a scrape that moved the count time is a counting scrape.
EXPORTER = r"""
import json, resource, select, sys, time
from prometheus_client import generate_latest
from loopscope.backends.linux.bpf.counter import ConnectionCounter
from loopscope.exporter.collector import ExporterOptions, LoopscopeCollector
from loopscope.exporter.serve import build_registry
interval, counts_interval = float(sys.argv[1]), float(sys.argv[2])  # interval 0: never scraped
def rss_kb():
    with open("/proc/self/status") as fh:
        return int(next(l for l in fh if l.startswith("VmRSS:")).split()[1])
counter = ConnectionCounter()
options = ExporterOptions(counts_interval_s=counts_interval, doctor_interval_s=0)
col = LoopscopeCollector(options, counter)
passes = []  # (start, end) perf_counter of each counting pass
counts = getattr(col, "counts", None)
if counts is not None:
    count = counts._count
    def timed():
        t = time.perf_counter()
        try:
            return count()
        finally:
            passes.append((t, time.perf_counter()))
    counts._count = timed
registry = build_registry(col)
generate_latest(registry)
if counts is not None:
    col.start()
rss0 = rss_kb()
print("ready", flush=True)
r0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.monotonic()
durs, cpus, text, rss, spans, inline = [], [], b"", [], [], []
while not select.select([sys.stdin], [], [], interval or None)[0]:
    before = getattr(col, "_counted_at_s", None)
    t, c = time.perf_counter(), time.process_time()
    text = generate_latest(registry)
    t1 = time.perf_counter()
    durs.append(t1 - t); cpus.append(time.process_time() - c); spans.append((t, t1))
    inline.append(counts is None and getattr(col, "_counted_at_s", None) != before)
    rss.append(rss_kb())
r1 = resource.getrusage(resource.RUSAGE_SELF)
if counts is not None:
    col.stop()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
wall = time.monotonic() - w0
text = generate_latest(registry)
series = sum(1 for l in text.decode().splitlines() if l and not l.startswith("#"))
overlap = [any(a < e and s < b for s, e in passes) or i for (a, b), i in zip(spans, inline)]
print(json.dumps({"cpu_s": cpu, "wall_s": wall, "scrape_s": durs, "scrape_cpu_s": cpus,
                  "with_counting": overlap, "counting_s": [e - s for s, e in passes[1:]],
                  "rss0_kb": rss0, "rss1_kb": rss_kb(), "rss_kb": rss, "series": series,
                  "map_full": counter.map_full()}), flush=True)
counter.close()
"""

# 10,000 distinct short-lived clients: forked children, each with its own comm, one connect each.
CLIENTS = r"""
import ctypes, os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
prctl = ctypes.CDLL(None).prctl
for i in range(n):
    pid = os.fork()
    if pid == 0:
        prctl(15, f"cli{i:05d}".encode(), 0, 0, 0)
        try:
            socket.create_connection(("127.0.0.1", port)).close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
print("done", flush=True)
"""

# 5,000 connected loopback pairs (10,000 sockets) held open until stdin closes.
PAIRS = r"""
import resource, socket, sys
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", int(sys.argv[2]))); srv.listen(4096)
held = []
for _ in range(n):
    c = socket.create_connection(srv.getsockname()); a, _ = srv.accept(); held += [c, a]
print("ready", flush=True)
sys.stdin.read()
"""


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def exporter_in_ns(ns: str, interval: float, counts_interval: float = 0.0) -> list[str]:
    """The exporter child in the workload's namespace, scraped every ``interval`` s (0: never),
    counting connected sockets every ``counts_interval`` s; nsenter keeps the host mount namespace
    (``ip netns exec`` remounts /sys, hiding the cgroup2 root the program attaches to)."""
    return [
        *("nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", EXPORTER),
        *(str(interval), str(counts_interval)),
    ]


def load_average() -> list[float]:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def start_ready(argv: list[str]) -> subprocess.Popen[str]:
    """Start a child and wait for its first line (kept in ``proc.ready_line``)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"{argv[-2:]} exited: {proc.wait(5)}")
    proc.ready_line = line  # type: ignore[attr-defined]
    return proc


def stop_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_load(ns: str, port: int, count: int, rate: float) -> dict[str, Any]:
    out = subprocess.run(
        in_ns(ns, sys.executable, "-c", CLIENT, str(port), str(count), str(rate)),
        capture_output=True,
        text=True,
        check=True,
        timeout=max(count / rate * 4, count / 1000) + 60,
    ).stdout
    return dict(json.loads(out))


def phase(
    ns: str, port: int, rate: float, seconds: float, mode: str, interval: float
) -> dict[str, Any]:
    """One load run: ``baseline`` (nothing), ``kernel`` (counter attached, never read) or
    ``exporter`` (scraped every ``interval`` s, counting at every scrape)."""
    exp = None
    if mode != "baseline":
        exp = start_ready(exporter_in_ns(ns, interval if mode == "exporter" else 0.0))
    try:
        load = run_load(ns, port, int(rate * seconds), rate)
    finally:
        stats = stop_json(exp) if exp is not None else None
    res: dict[str, Any] = {
        "median_us": statistics.median(load["durs_ns"]) / 1000,
        "achieved_per_s": len(load["durs_ns"]) / load["wall_s"],
    }
    if stats is not None and mode == "exporter":
        res["cpu_pct"] = 100 * stats["cpu_s"] / stats["wall_s"]
    if stats is not None:
        res["map_full"] = stats["map_full"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Short phases, one repeat.")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6.0, help="Seconds per load phase.")
    ap.add_argument("--scrape-interval", type=float, default=5.0)
    ap.add_argument("--many", type=int, default=1_000_000, help="Connections for the RSS check.")
    ap.add_argument("--clients", type=int, default=10_000, help="Distinct short-lived clients.")
    ap.add_argument("--out", default="perf/results/exporter.json")
    ap.add_argument(
        "--only-rss", action="store_true", help="Only the RSS phase (a fresh namespace)."
    )
    ap.add_argument(
        "--only-scrape", action="store_true", help="Only the scrape phases at 10k sockets."
    )
    ap.add_argument(
        "--only-client-map", action="store_true", help="Only the client map's kernel cost."
    )
    ap.add_argument(
        "--only-dump-walk", action="store_true", help="Only the v2 vs v1 (one walk) dump timing."
    )
    ap.add_argument(
        "--only-toggled",
        action="store_true",
        help="Only the on/off-in-blocks latency at 300 and 3,000 conn/s (60 s each).",
    )
    args = ap.parse_args()
    results: dict[str, Any]
    if args.only_toggled:
        results = {
            "config": vars(args),
            "cpus": os.cpu_count(),
            "load_average_start": load_average(),
        }
        for rate in (300.0, 3000.0):
            results[f"toggled_{int(rate)}"] = toggled(rate)
            print(
                json.dumps(
                    {
                        k: v
                        for k, v in results[f"toggled_{int(rate)}"].items()
                        if k != "pair_diffs_pct"
                    }
                )
            )
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
        return
    if args.only_dump_walk:
        results = {"config": vars(args), "dump_walk": dump_walk()}
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
        print(json.dumps(results["dump_walk"]))
        return
    if args.only_client_map:
        results = {"config": vars(args), "client_map_cost": client_map_cost()}
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
        print(json.dumps({k: v for k, v in results["client_map_cost"].items() if k != "rounds_us"}))
        return
    if args.only_scrape:
        results = {
            "config": vars(args),
            "cpus": os.cpu_count(),
            "load_average_start": load_average(),
        }
        results["scrape_10k_sockets"] = scrape_10k()
        results["load_average_end"] = load_average()
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
        print("\n".join(scrape_lines(results["scrape_10k_sockets"])))
        return
    if args.quick:
        args.repeats, args.seconds, args.many, args.clients = 1, 3.0, 30_000, 2_000
    ns = f"ls-perf-exp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(in_ns(ns, "ip", "link", "set", "lo", "up"), check=True)
    server = start_ready(in_ns(ns, sys.executable, "-c", SERVER))
    results = {"config": vars(args), "cpus": os.cpu_count(), "load_average_start": load_average()}
    try:
        port = int(server.ready_line)  # type: ignore[attr-defined]  # the server prints its port
        for rate in () if args.only_rss else (300.0, 3000.0):
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "kernel": [], "exporter": []}
            for i in range(args.repeats):
                order = ("baseline", "kernel", "exporter")
                for name in order[i % 3 :] + order[: i % 3]:  # rotated: no phase always first
                    runs[name].append(
                        phase(ns, port, rate, args.seconds, name, args.scrape_interval)
                    )
            base = statistics.median(r["median_us"] for r in runs["baseline"])
            kernel = statistics.median(r["median_us"] for r in runs["kernel"])
            on = statistics.median(r["median_us"] for r in runs["exporter"])
            results[f"rate_{int(rate)}"] = {
                "baseline_median_us": base,
                "kernel_median_us": kernel,
                "exporter_median_us": on,
                "kernel_extra_latency_pct": 100 * (kernel - base) / base,
                "extra_latency_pct": 100 * (on - base) / base,
                "exporter_cpu_pct_of_one_core": statistics.median(
                    r["cpu_pct"] for r in runs["exporter"]
                ),
                "achieved_per_s": statistics.median(r["achieved_per_s"] for r in runs["exporter"]),
                "runs": runs,
            }
        if not args.only_rss:
            results["scrape_10k_sockets"] = scrape_10k()
        # RSS after many connections (scraped every second, counts at the default 30 s)
        exp = start_ready(exporter_in_ns(ns, 1.0, 30.0))
        load = run_load(ns, port, args.many, 1e9)
        stats = stop_json(exp)
        mid = stats["rss_kb"][len(stats["rss_kb"]) // 2] if stats["rss_kb"] else stats["rss0_kb"]
        results["rss_many_connections"] = {
            "connections": len(load["durs_ns"]),
            "rss_start_kb": stats["rss0_kb"],
            "rss_half_way_kb": mid,
            "rss_end_kb": stats["rss1_kb"],
            "delta_kb": stats["rss1_kb"] - stats["rss0_kb"],
            "second_half_delta_kb": stats["rss1_kb"] - mid,
            "rss_every_10th_scrape_kb": stats["rss_kb"][::10],
            "load_average": load_average(),
        }
        if args.only_rss:
            return finish(args, results)
        # series after N distinct short-lived clients
        exp = start_ready(exporter_in_ns(ns, 2.0, 30.0))
        t0 = time.monotonic()
        subprocess.run(
            in_ns(ns, sys.executable, "-c", CLIENTS, str(port), str(args.clients)),
            check=True,
            capture_output=True,
            timeout=1200,
        )
        stats = stop_json(exp)
        results["distinct_clients"] = {
            "clients": args.clients,
            "seconds": time.monotonic() - t0,
            "series_in_exposition": stats["series"],
            "map_full": stats["map_full"],
        }
    finally:
        server.kill()
        server.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    finish(args, results)


def finish(args: argparse.Namespace, results: dict[str, Any]) -> None:
    results["load_average_end"] = load_average()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)
    print(json.dumps(results["rss_many_connections"]) if args.only_rss else table(results))


# The in-kernel cost of the client endpoint map (``--http`` only): the counter loaded with and
# without it (nothing reads either), connection latency at 3,000/s, rounds rotated.
KCOST = r"""
import sys
from loopscope.backends.linux.bpf.counter import ConnectionCounter
c = ConnectionCounter(client_entries=int(sys.argv[1]))
print("ready", flush=True)
sys.stdin.read()
c.close()
"""


# The exporter toggled in blocks inside one load run: "on" blocks have the counter program linked and
# the collector scraped (every `interval` s of on-time, counting at the default 30 s), "off" blocks have
# the program unlinked and no scrape. Prints the block boundaries (CLOCK_MONOTONIC, the client's clock).
TOGGLED = r"""
import json, sys, time
from prometheus_client import generate_latest
from loopscope.backends.linux.bpf.counter import ConnectionCounter
from loopscope.exporter.collector import ExporterOptions, LoopscopeCollector
from loopscope.exporter.serve import build_registry
block_s, seconds, interval = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
counter = ConnectionCounter()
col = LoopscopeCollector(ExporterOptions(doctor_interval_s=0), counter)
registry = build_registry(col)
generate_latest(registry)
counter.detach()
print("ready", flush=True)
sys.stdin.readline()  # the load has started
blocks, on, on_time, next_scrape = [], False, 0.0, 0.0
end = time.monotonic() + seconds
while time.monotonic() < end:
    on = not on
    counter.attach() if on else counter.detach()
    b0 = time.monotonic_ns()
    stop = time.monotonic() + block_s
    while True:
        left = stop - time.monotonic()
        if on and on_time + (block_s - left) >= next_scrape:
            generate_latest(registry)
            next_scrape += interval
        if left <= 0:
            break
        time.sleep(min(left, 0.05))
    if on:
        on_time += block_s
    blocks.append((b0, time.monotonic_ns(), on))
counter.close()
print(json.dumps({"blocks": blocks}), flush=True)
"""


def toggled(
    rate: float, seconds: float = 60.0, block_s: float = 1.0, interval: float = 5.0
) -> dict[str, Any]:
    """Extra median latency with the exporter on, blocks of ``block_s`` toggled inside one load run
    at ``rate`` connections/s: per block the median of the connections that started inside it
    (10 ms from either edge left out), each on block paired with the off block before it; the
    median of the pairs' relative differences, and the pooled medians."""
    ns = f"ls-perf-tgl-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(in_ns(ns, "ip", "link", "set", "lo", "up"), check=True)
        server = start_ready(in_ns(ns, sys.executable, "-c", SERVER))
        port = int(server.ready_line)  # type: ignore[attr-defined]
        tog = start_ready(
            [
                *("nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", TOGGLED),
                *(str(block_s), str(seconds), str(interval)),
            ]
        )
        assert tog.stdin is not None
        tog.stdin.write("go\n")
        tog.stdin.flush()
        load = run_load(ns, port, int(rate * (seconds + 2)), rate)
        blocks = stop_json(tog)["blocks"]
        server.kill()
        server.wait(10)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    edge = 10_000_000
    per_block: list[tuple[bool, float, list[int]]] = []
    pairs = sorted(zip(load["starts_ns"], load["durs_ns"], strict=True))
    i = 0
    for b0, b1, on in blocks:
        inside: list[int] = []
        while i < len(pairs) and pairs[i][0] < b1:
            s, d = pairs[i]
            if b0 + edge <= s <= b1 - edge:
                inside.append(d)
            i += 1
        if inside:
            per_block.append((on, statistics.median(inside), inside))
    diffs = [
        100 * (cur[1] - prev[1]) / prev[1]
        for prev, cur in itertools.pairwise(per_block)
        if cur[0] and not prev[0]
    ]
    pooled = {
        arm: statistics.median(d for on, _, ds in per_block if on == want for d in ds) / 1000
        for arm, want in (("off", False), ("on", True))
    }
    return {
        "rate_per_s": rate,
        "achieved_per_s": len(load["durs_ns"]) / load["wall_s"],
        "block_s": block_s,
        "pairs": len(diffs),
        "extra_latency_pct_median_of_pairs": statistics.median(diffs) if diffs else None,
        "pooled_median_us": pooled,
        "pooled_extra_latency_pct": 100 * (pooled["on"] - pooled["off"]) / pooled["off"],
        "pair_diffs_pct": [round(x, 2) for x in diffs],
        "load_average": load_average(),
    }


# The kernel's walk of its established table: two v2 dumps (AF_INET, AF_INET6, what the collector
# sends) against one v1 TCPDIAG_GETSOCK dump (the compat path dumps with family AF_UNSPEC: one walk for
# both families), 5,000 pairs in the namespace, no filter, medians of 7.
DUMP_WALK = r"""
import socket, struct, time, resource, statistics
s,h=resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE,(h,h))
srv=socket.socket(); srv.bind(("127.0.0.1",8080)); srv.listen(4096)
held=[]
for _ in range(5000):
    c=socket.create_connection(("127.0.0.1",8080)); a,_=srv.accept(); held+=[c,a]
STATES=(1<<1)|(1<<6)
def dump(msg_type, payload):
    sk=socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4); sk.bind((0,0))
    hdr=struct.pack("=IHHII", 16+len(payload), msg_type, 0x301, 1, 0)
    t=time.perf_counter(); sk.send(hdr+payload); n=0; done=False
    while not done:
        data=sk.recv(1<<20); off=0
        while off < len(data):
            ln,typ=struct.unpack_from("=IH",data,off)
            if typ==3: done=True; break
            if typ==2: raise OSError("err")
            n+=1; off+=(ln+3)&~3
    sk.close(); return time.perf_counter()-t, n
def v2(fam): return struct.pack("=BBBxI", fam, socket.IPPROTO_TCP, 0, STATES)+bytes(48)
def v1(): return struct.pack("=BBBB", 0, 0, 0, 0)+bytes(48)+struct.pack("=II", STATES, 0)
r={"v2 inet+inet6":[], "v1 compat (one walk)":[]}
for _ in range(7):
    a=dump(20, v2(socket.AF_INET)); b=dump(20, v2(socket.AF_INET6))
    r["v2 inet+inet6"].append((a[0]+b[0], a[1]+b[1]))
    c=dump(18, v1())  # TCPDIAG_GETSOCK
    r["v1 compat (one walk)"].append(c)
import json
print(json.dumps({k: {"median_ms": 1000 * statistics.median(x[0] for x in v), "messages": v[0][1]} for k, v in r.items()}))
"""


def dump_walk() -> dict[str, Any]:
    """Run :data:`DUMP_WALK` in a fresh namespace."""
    ns = f"ls-perf-walk-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(in_ns(ns, "ip", "link", "set", "lo", "up"), check=True)
        out = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", DUMP_WALK],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return {"dumps": json.loads(out), "load_average": load_average()}


def client_map_cost(rounds: int = 6, seconds: float = 4.0) -> dict[str, Any]:
    """Median connection latency at 3,000 conn/s: off, counter, counter + client map."""
    ns = f"ls-perf-kcost-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    runs: dict[str, list[float]] = {"off": [], "counter": [], "counter_with_client_map": []}
    try:
        subprocess.run(in_ns(ns, "ip", "link", "set", "lo", "up"), check=True)
        server = start_ready(in_ns(ns, sys.executable, "-c", SERVER))
        port = int(server.ready_line)  # type: ignore[attr-defined]
        names = list(runs)
        for i in range(rounds):
            for name in names[i % 3 :] + names[: i % 3]:
                entries = {"counter": "0", "counter_with_client_map": "16384"}.get(name)
                prog = (
                    None if entries is None else start_ready([sys.executable, "-c", KCOST, entries])
                )
                try:
                    load = run_load(ns, port, int(3000 * seconds), 3000.0)
                finally:
                    if prog is not None:
                        prog.communicate("", timeout=30)
                runs[name].append(statistics.median(load["durs_ns"]) / 1000)
        server.kill()
        server.wait(10)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    base = statistics.median(runs["off"])
    out: dict[str, Any] = {"rounds_us": runs, "load_average": load_average()}
    for name, values in runs.items():
        out[f"{name}_median_us"] = statistics.median(values)
        out[f"{name}_vs_off_pct"] = 100 * (statistics.median(values) - base) / base
    return out


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _ms(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_ms": 1000 * statistics.median(values),
        "p99_ms": 1000 * _pct(values, 0.99),
        "max_ms": 1000 * max(values),
    }


def scrape_10k(seconds: float = 8.0) -> dict[str, Any]:
    """Scrape durations with 5,000 connected pairs in a namespace of their own (no TIME_WAIT left
    by the load phases), scraped every 0.1 s: listener on 8080 or on an ephemeral port (whose
    server-side sockets the kernel filter cannot leave out); counts every 1 s (so that about a
    quarter of the scrapes coincide with a counting pass) and at the default 30 s. Scrape
    percentiles over all scrapes and over those that coincided with a counting pass (made by the
    counting thread, or by the scrape itself in a tree without it); the counting passes' own
    durations; p99 of ~80 scrapes is close to their maximum."""
    out: dict[str, Any] = {}
    for listen_port, counts_interval, name in (
        (8080, 1.0, "port_8080_counts_every_1s"),
        (0, 1.0, "ephemeral_port_counts_every_1s"),
        (8080, 30.0, "port_8080_default_counts_every_30s"),
    ):
        ns = f"ls-perf-10k-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(in_ns(ns, "ip", "link", "set", "lo", "up"), check=True)
            pairs = start_ready(in_ns(ns, sys.executable, "-c", PAIRS, "5000", str(listen_port)))
            exp = start_ready(exporter_in_ns(ns, 0.1, counts_interval))
            time.sleep(seconds)
            stats = stop_json(exp)
            pairs.stdin.close()  # type: ignore[union-attr]
            pairs.wait(30)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
        durs, flags = stats["scrape_s"], stats["with_counting"]
        out[name] = {
            **_ms(durs),
            "during_counting": _ms([d for d, f in zip(durs, flags, strict=True) if f]),
            "counting": _ms(stats["counting_s"]),
            "cpu_median_ms": 1000 * statistics.median(stats["scrape_cpu_s"]),
            "scrapes": len(durs),
            "load_average": load_average(),
        }
    return out


def scrape_lines(scrapes: dict[str, Any]) -> list[str]:
    lines = []
    for name, s in scrapes.items():
        c, k = s["during_counting"], s["counting"]
        lines.append(
            f"| scrape, 10k sockets, {name} | {s['median_ms']:.1f} ms median, p99 "
            f"{s['p99_ms']:.1f} (n={s['n']}); coinciding with a count: "
            + (
                f"{c['median_ms']:.1f} median, max {c['max_ms']:.1f} (n={c['n']})"
                if c["n"]
                else "none"
            )
            + (f"; counting {k['median_ms']:.0f} ms median" if k["n"] else "")
            + f"; CPU {s['cpu_median_ms']:.1f} ms |"
        )
    return lines


def table(r: dict[str, Any]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    for rate in ("300", "3000"):
        x = r[f"rate_{rate}"]
        lines.append(
            f"| {rate} conn/s: median latency off / kernel counter only / exporter | "
            f"{x['baseline_median_us']:.0f} / {x['kernel_median_us']:.0f} "
            f"({x['kernel_extra_latency_pct']:+.1f}%) / {x['exporter_median_us']:.0f} us "
            f"({x['extra_latency_pct']:+.1f}%) |"
        )
        lines.append(
            f"| {rate} conn/s: exporter CPU (one core) | {x['exporter_cpu_pct_of_one_core']:.2f}% |"
        )
    lines += scrape_lines(r["scrape_10k_sockets"])
    m = r["rss_many_connections"]
    lines.append(
        f"| RSS over {m['connections']:,} connections: start, half way, end | "
        f"{m['rss_start_kb'] / 1024:.1f}, {m['rss_half_way_kb'] / 1024:.1f}, "
        f"{m['rss_end_kb'] / 1024:.1f} MB |"
    )
    d = r["distinct_clients"]
    lines.append(
        f"| series after {d['clients']:,} distinct clients | {d['series_in_exposition']} |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

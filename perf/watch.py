"""Benchmark: does ``loopscope watch`` catch every short-lived loopback connection, with the right pids,
and what does it cost? Side by side in the same run: ``ss -E`` (count only) and a psutil poller at 10 Hz.

Workload (in a fresh network namespace, so other traffic on the host does not mix in): a server process
on 127.0.0.1 (accept, read, reply, close) and a client process making COUNT connect -> request -> reply ->
close cycles at RATE per second, recording each ephemeral port and each cycle's duration.

Phases per load: ``baseline`` (no collector) and ``watch`` (loopscope alone), interleaved ``--repeats``
times (medians of the run medians; the worst caught %), then ``all`` (loopscope, ss -E and the psutil
poller at once). Scores per connection instance (ports are reused, so per-port multisets):
caught %, client-pid-correct %, server-pid-correct %; collector CPU % of one core (its own rusage over the
workload's wall time); extra latency = median cycle time minus the baseline median.

Run as root: ``python perf/watch.py [--quick] [--out bench-watch.json]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

SERVER = r"""
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4096)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.recv(64); c.sendall(b"pong"); c.close()
"""

CLIENT = r"""
import json, socket, sys, time
port, count, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ports, durs, starts = [], [], []
clock = time.monotonic_ns  # CLOCK_MONOTONIC, the clock the toggling collector logs its blocks in
start = time.monotonic(); deadline = start + count / rate * 3 + 10
for i in range(count):
    d = start + i / rate - time.monotonic()
    if d > 0:
        time.sleep(d)
    t0 = clock()
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"ping"); c.recv(64)
    ports.append(c.getsockname()[1]); c.close()
    durs.append(clock() - t0); starts.append(t0)
    if time.monotonic() > deadline:
        break
print(json.dumps({"ports": ports, "durs_ns": durs, "starts_ns": starts, "wall_s": time.monotonic() - start}),
      flush=True)
"""

WATCH = r"""
import json, os, resource, select, sys, time
from loopscope.watch.session import WatchOptions, WatchSession
from loopscope.analysis.watch.report import summarize_watch
ns, port, which, nice = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
os.nice(nice)  # as `loopscope watch --nice` does (default 10)
s = WatchSession(WatchOptions(netns=ns, ebpf=which in ("both", "ebpf"), destroy=which in ("both", "destroy"),
                              ebpf_run_stats=True))
print("ready", flush=True)
k0 = s.ebpf_run_stats() or (0, 0)
r0 = resource.getrusage(resource.RUSAGE_SELF)
while not select.select([sys.stdin], [], [], s.options.drain_interval_s)[0]:  # the CLI's cadence
    s.poll()
time.sleep(0.3); s.poll()
r1 = resource.getrusage(resource.RUSAGE_SELF)
k1 = s.ebpf_run_stats() or (0, 0)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
data = s.data(); s.close()
rep = summarize_watch(data)
apps = {p: a.pids for a in rep.apps for p in a.ports}
out = [[i.client.port, i.client_pid, list(apps.get(i.server.port, ()))] for i in rep.instances
       if i.server.port == port and i.established]
print(json.dumps({"cpu_s": cpu, "kernel_runs": k1[0] - k0[0], "kernel_ns": k1[1] - k0[1], "instances": out, "sources": [[x.name, x.active, x.events, x.dropped]
      for x in data.sources]}), flush=True)
"""

TOGGLE = r"""
import json, os, select, sys, time
from loopscope.watch.session import WatchOptions, WatchSession
ns, which, nice, block_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
os.nice(nice)
opts = WatchOptions(netns=ns, ebpf=which in ("both", "ebpf"), destroy=which in ("both", "destroy"))
s = WatchSession(opts)
s.pause()
print("ready", flush=True)
clock, blocks, on = time.monotonic_ns, [], False
t = clock()
while not select.select([sys.stdin], [], [], 0)[0]:
    if on:  # ON: sources linked, drained every drain_interval_s, snapshots when due; pause() drains last
        s.resume()
        end = time.monotonic() + block_s
        while time.monotonic() < end:
            time.sleep(min(opts.drain_interval_s, max(0.0, end - time.monotonic())))
            s.poll()
        s.pause()
    else:  # OFF: nothing linked, the collector asleep
        time.sleep(block_s)
    t2 = clock()
    blocks.append([on, t, t2]); t, on = t2, not on
d = s.data(); s.close()
print(json.dumps({"blocks": blocks, "events": [[x.name, x.events, x.dropped] for x in d.sources]}), flush=True)
"""

POLLER = r"""
import json, resource, select, sys, time, psutil
port = int(sys.argv[1]); seen = {}
print("ready", flush=True)
r0 = resource.getrusage(resource.RUSAGE_SELF); nxt = time.monotonic()
while not select.select([sys.stdin], [], [], max(0.0, nxt - time.monotonic()))[0]:
    nxt += 0.1
    for c in psutil.net_connections("tcp4"):
        if c.raddr and c.raddr.port == port:
            seen[c.laddr.port] = c.pid if c.pid else seen.get(c.laddr.port)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                  "seen": [[p, pid] for p, pid in seen.items()]}), flush=True)
"""


NICE = 10  # the collector's niceness, as `loopscope watch` (set by --nice)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def start_ready(argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{argv[:4]} exited early")
    return proc


def stop_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate("stop\n", timeout=120)
    return json.loads(out.strip().splitlines()[-1])


def multiset_score(truth: Counter[int], seen: Counter[int]) -> int:
    return sum(min(n, seen.get(p, 0)) for p, n in truth.items())


def run_phase(
    ns: str, port: int, server_pid: int, count: int, rate: float, collectors: set[str]
) -> dict[str, Any]:
    procs: dict[str, subprocess.Popen[str]] = {}
    ss_proc = None
    which = next((c.split(":")[1] for c in collectors if c.startswith("watch:")), "both")
    if "watch" in collectors or which != "both":
        procs["watch"] = start_ready([sys.executable, "-c", WATCH, ns, str(port), which, str(NICE)])
    if "psutil" in collectors:
        procs["psutil"] = start_ready(in_ns(ns, sys.executable, "-c", POLLER, str(port)))
    if "ss" in collectors:
        # to a file, not a pipe: an unread 64 KiB pipe would block ss and lose events
        ss_out = tempfile.TemporaryFile(mode="w+")
        ss_proc = subprocess.Popen(
            in_ns(ns, "stdbuf", "-oL", "ss", "-E", "-t", "-n", "-H"), stdout=ss_out, text=True
        )
        time.sleep(0.3)
    client = subprocess.Popen(
        in_ns(ns, sys.executable, "-c", CLIENT, str(port), str(count), str(rate)),
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = client.communicate(timeout=count / rate * 3 + 60)
    truth = json.loads(out)
    time.sleep(0.5)
    result: dict[str, Any] = {
        "connections": len(truth["ports"]),
        "achieved_rate": round(len(truth["ports"]) / truth["wall_s"], 1),
        "median_cycle_us": round(statistics.median(truth["durs_ns"]) / 1000, 1),
        "p99_cycle_us": round(statistics.quantiles(truth["durs_ns"], n=100)[98] / 1000, 1),
        "collectors": {},
    }
    wall = truth["wall_s"]
    ports = Counter(truth["ports"])
    n = len(truth["ports"])
    if "watch" in procs:
        w = stop_json(procs["watch"])
        caught = Counter(p for p, _, _ in w["instances"])
        right_client = Counter(p for p, pid, _ in w["instances"] if pid == client.pid)
        right_server = Counter(p for p, _, spids in w["instances"] if server_pid in spids)
        result["collectors"]["loopscope watch"] = {
            "caught_pct": round(100 * multiset_score(ports, caught) / n, 2),
            "client_pid_pct": round(100 * multiset_score(ports, right_client) / n, 2),
            "server_pid_pct": round(100 * multiset_score(ports, right_server) / n, 2),
            "cpu_pct_one_core": round(100 * w["cpu_s"] / wall, 2),
            "sources": w["sources"],
            "kernel_runs_per_conn": round(w["kernel_runs"] / n, 2),
            "kernel_ns_per_run": round(w["kernel_ns"] / w["kernel_runs"], 1)
            if w["kernel_runs"]
            else None,
            "kernel_us_per_conn": round(w["kernel_ns"] / n / 1000, 3),
        }
    if "psutil" in procs:
        p = stop_json(procs["psutil"])
        seen = Counter(port_ for port_, _ in p["seen"])
        good = Counter(port_ for port_, pid in p["seen"] if pid == client.pid)
        result["collectors"]["psutil 10 Hz"] = {
            "caught_pct": round(100 * multiset_score(ports, seen) / n, 2),
            "client_pid_pct": round(100 * multiset_score(ports, good) / n, 2),
            "server_pid_pct": None,
            "cpu_pct_one_core": round(100 * p["cpu_s"] / wall, 2),
            "note": "distinct client ports seen (a reused port counts once)",
        }
    if ss_proc is not None:
        ps_cpu = _child_cpu(ss_proc.pid)
        ss_proc.send_signal(signal.SIGTERM)  # SIGINT is ignored when started from a background job
        ss_proc.wait(timeout=10)
        ss_out.seek(0)
        text = ss_out.read()
        ss_out.close()
        server_side = sum(
            1
            for line in text.splitlines()
            if _ss_local(line) == f"127.0.0.1:{port}" and not line.split()[4].endswith(":*")
        )
        result["collectors"]["ss -E (count)"] = {
            "caught_pct": round(100 * min(server_side, n) / n, 2),
            "client_pid_pct": 0.0,
            "server_pid_pct": 0.0,
            "cpu_pct_one_core": round(100 * ps_cpu / wall, 2),
            "lines": len(text.splitlines()),
        }
    return result


def _ss_local(line: str) -> str | None:
    """Local address:port column of an ``ss -E -t -n -H`` line (``State Recv-Q Send-Q Local Peer``)."""
    parts = line.split()
    return parts[3] if len(parts) >= 5 else None


def _child_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def run_toggled(
    ns: str, port: int, count: int, rate: float, which: str, block_s: float
) -> dict[str, Any]:
    """One client run while a collector alternates ON/OFF blocks; cycles classified by block.

    A cycle counts for a block when it starts and ends inside it. ON blocks include the resume and the
    final drain of pause() (conservative); OFF blocks have nothing linked and the collector asleep.
    """
    col = start_ready([sys.executable, "-c", TOGGLE, ns, which, str(NICE), str(block_s)])
    client = subprocess.Popen(
        in_ns(ns, sys.executable, "-c", CLIENT, str(port), str(count), str(rate)),
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = client.communicate(timeout=count / rate * 3 + 60)
    truth = json.loads(out)
    log = stop_json(col)
    blocks = log["blocks"]
    per_block: list[list[float]] = [[] for _ in blocks]
    k = 0
    for t0, dur in zip(truth["starts_ns"], truth["durs_ns"], strict=False):
        while k < len(blocks) and blocks[k][2] < t0:
            k += 1
        if k < len(blocks) and blocks[k][1] <= t0 and t0 + dur <= blocks[k][2]:
            per_block[k].append(dur / 1000)
    on = [d for b, ds in zip(blocks, per_block, strict=False) if b[0] for d in ds]
    off = [d for b, ds in zip(blocks, per_block, strict=False) if not b[0] for d in ds]
    meds = [
        (b[0], statistics.median(ds))
        for b, ds in zip(blocks, per_block, strict=False)
        if len(ds) >= 5
    ]
    paired = []  # each ON block against the mean of the OFF blocks on either side
    for j, (is_on, med) in enumerate(meds):
        if is_on:
            nb = [m for o, m in meds[max(0, j - 1) : j + 2] if not o]
            if nb:
                paired.append(med / statistics.fmean(nb) - 1)
    on_med, off_med = statistics.median(on), statistics.median(off)
    return {
        "connections": len(truth["ports"]),
        "achieved_rate": round(len(truth["ports"]) / truth["wall_s"], 1),
        "on_cycles": len(on),
        "off_cycles": len(off),
        "on_median_us": round(on_med, 2),
        "off_median_us": round(off_med, 2),
        "extra_pct": round(100 * (on_med / off_med - 1), 2),
        "paired": paired,
        "events": log["events"],
    }


def summarize_toggled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled over the runs: per-run extra %, the median of the runs, and the median of every block pair."""
    paired = [p for r in runs for p in r["paired"]]
    extra = [r["extra_pct"] for r in runs]
    # 95% interval of the block-pair median: 2,000 bootstrap resamples of the pairs (fixed seed)
    rng = random.Random(1)
    boot = (
        sorted(statistics.median(rng.choices(paired, k=len(paired))) for _ in range(2000))
        if paired
        else []
    )
    return {
        "extra_pct_runs": extra,
        "extra_pct": round(statistics.median(extra), 2),
        "paired_ci95_pct": [round(100 * boot[49], 2), round(100 * boot[1949], 2)] if boot else None,
        "paired_pct": [round(100 * p, 2) for p in paired],
        "extra_us": round(
            statistics.median(r["on_median_us"] - r["off_median_us"] for r in runs), 2
        ),
        "off_median_us": round(statistics.median(r["off_median_us"] for r in runs), 2),
        "on_median_us": round(statistics.median(r["on_median_us"] for r in runs), 2),
        "paired_blocks": len(paired),
        "paired_median_pct": round(100 * statistics.median(paired), 2) if paired else None,
        "cycles_on_off": [sum(r["on_cycles"] for r in runs), sum(r["off_cycles"] for r in runs)],
        "events": runs[-1]["events"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the connections")
    ap.add_argument("--out", default=None, help="write the JSON here (default: stdout only)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per phase and load")
    ap.add_argument(
        "--block", type=float, default=0.5, help="seconds per ON/OFF block in the latency runs"
    )
    ap.add_argument(
        "--nice", type=int, default=10, help="collector niceness (loopscope watch --nice; 0: none)"
    )
    args = ap.parse_args()
    global NICE
    NICE = args.nice
    if os.geteuid() != 0:
        sys.exit("perf/watch.py needs root (eBPF, netns)")
    loads = [(2000, 300.0), (20000, 3000.0)]
    if args.quick:
        loads = [(c // 10, r) for c, r in loads]
    ns = f"lsw-bench-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    results: dict[str, Any] = {
        "bench": "watch",
        "collector_nice": NICE,
        "block_s": args.block,
        "loads": [],
    }
    server = None
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", SERVER), stdout=subprocess.PIPE, text=True
        )
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for count, rate in loads:
            entry: dict[str, Any] = {"count": count, "rate": rate, "repeats": args.repeats}
            score: list[dict[str, Any]] = []
            toggled: dict[str, list[dict[str, Any]]] = {"both": [], "ebpf": [], "destroy": []}
            for _ in range(args.repeats):  # interleaved, so drift on a shared host hits all alike
                score.append(run_phase(ns, port, server.pid, count, rate, {"watch"}))
                print(f"# {count}@{rate:g}/s score: {json.dumps(score[-1])[:240]}", file=sys.stderr)
                for which in toggled:
                    toggled[which].append(run_toggled(ns, port, count, rate, which, args.block))
                    r = toggled[which][-1]
                    print(
                        f"# {count}@{rate:g}/s toggled {which}: on {r['on_median_us']} off {r['off_median_us']}"
                        f" us ({r['extra_pct']:+.2f}%), {len(r['paired'])} pairs",
                        file=sys.stderr,
                    )
            w = [r["collectors"]["loopscope watch"] for r in score]
            entry["score"] = {
                "caught_pct": min(c["caught_pct"] for c in w),
                "client_pid_pct": min(c["client_pid_pct"] for c in w),
                "server_pid_pct": min(c["server_pid_pct"] for c in w),
                "cpu_pct_one_core": statistics.median(c["cpu_pct_one_core"] for c in w),
                "cpu_pct_runs": [c["cpu_pct_one_core"] for c in w],
                "sources": w[-1]["sources"],
                "kernel_us_per_conn": statistics.median(c["kernel_us_per_conn"] for c in w),
                "kernel_ns_per_run": statistics.median(c["kernel_ns_per_run"] or 0 for c in w),
                "kernel_runs_per_conn": w[-1]["kernel_runs_per_conn"],
                "achieved_rate": min(r["achieved_rate"] for r in score),
            }
            entry["latency"] = {which: summarize_toggled(runs) for which, runs in toggled.items()}
            entry["all"] = run_phase(ns, port, server.pid, count, rate, {"watch", "ss", "psutil"})
            print(f"# {count}@{rate:g}/s all: {json.dumps(entry['all'])[:240]}", file=sys.stderr)
            results["loads"].append(entry)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
    text = json.dumps(results, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    print(table(results), file=sys.stderr)


def table(results: dict[str, Any]) -> str:
    """The markdown tables for the README watch section: detection and CPU, then latency."""
    rows = [
        "| load | collector | caught % | client pid % | server pid % | CPU % of 1 core | eBPF in kernel per conn |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in results["loads"]:
        load = f"{entry['count']} @ {entry['rate']:g}/s"
        sc = entry["score"]
        kern = (
            f"{sc['kernel_us_per_conn']:.2f} us ({sc['kernel_runs_per_conn']:g} runs x "
            f"{sc['kernel_ns_per_run']:.0f} ns)"
            if sc.get("kernel_ns_per_run")
            else ""
        )
        runs = ", ".join(f"{x:g}" for x in sc["cpu_pct_runs"])
        rows.append(
            f"| {load} | loopscope watch ({entry['repeats']} runs) | {sc['caught_pct']} | "
            f"{sc['client_pid_pct']} | {sc['server_pid_pct']} | {sc['cpu_pct_one_core']} ({runs}) | {kern} |"
        )
        for name, c in entry["all"]["collectors"].items():
            rows.append(
                f"| {load} | {name} (all three at once) | {c['caught_pct']} | {c['client_pid_pct']} | "
                f"{c['server_pid_pct'] if c['server_pid_pct'] is not None else '-'} | "
                f"{c['cpu_pct_one_core']} | |"
            )
    rows += [
        "",
        "| load | sources on | cycle median OFF -> ON | extra latency (runs) | block pairs: median (95% CI) |",
        "|---|---|---|---|---|",
    ]
    for entry in results["loads"]:
        load = f"{entry['count']} @ {entry['rate']:g}/s"
        for which, lat in entry["latency"].items():
            name = {
                "both": "eBPF + destroy (watch)",
                "ebpf": "eBPF only",
                "destroy": "destroy only",
            }[which]
            runs = ", ".join(f"{x:+.1f}" for x in lat["extra_pct_runs"])
            rows.append(
                f"| {load} | {name} | {lat['off_median_us']} -> {lat['on_median_us']} us | "
                f"{lat['extra_us']:+.1f} us ({lat['extra_pct']:+.1f}%; runs {runs}) | "
                f"{lat['paired_median_pct']:+.1f}% of {lat['paired_blocks']} "
                f"(95% CI {lat['paired_ci95_pct'][0]:+.1f} .. {lat['paired_ci95_pct'][1]:+.1f}) |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    main()

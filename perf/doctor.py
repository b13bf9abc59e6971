"""Benchmark: `loopscope doctor` rung 1 wall time (goal < 1 s), side by side with a shell anchor, in one run.

Measured, interleaved round by round, medians of ``--rounds``:

- ``doctor rung 1 (in-process)``: gather + judge of rung 1 in a running Python (what a library user pays);
  with its parts: snapshot (sock_diag + /proc fd scan + rtnl + sysctls) and the probes/readers inside the
  namespace (routes, ICMP 2x3, TCP/UDP echo 6x5 round trips, localhost, nft/iptables-save).
- ``loopscope doctor --rung 1 --json``: the whole CLI process (interpreter start included).
- ``python -c "import loopscope.cli.app"`` (every command module imported at start-up) and ``python -c pass``:
  where the CLI's time goes.
- anchor ``shell ladder``: the same reads done by hand with the usual tools, one process each:
  ``ip -j link/addr``, ``ip -j route show table local``, ``ip route get`` x3, ``getent ahosts localhost``,
  ``nft -j list ruleset``, ``iptables-save``, ``ip6tables-save``, ``ss -Htan``, ``ss -Hltnp``, ``sysctl`` of
  the port and loopback knobs (no ping: iputils-ping is not installed here; the doctor's ICMP is extra work).

Places: the host namespace as it is (its socket count is recorded: other sessions' benchmarks may hold
~100k sockets), a fresh netns with lo up (``ip netns add``; deleted at the end), and the same netns holding
``--conns`` established loopback connections (2 sockets each, held by worker processes inside it).

Usage: ``python perf/doctor.py --rounds 7`` -> perf/results/doctor.json
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
import uuid
from pathlib import Path

SHELL_LADDER = [
    ["ip", "-j", "link", "show", "lo"],
    ["ip", "-j", "addr", "show"],
    ["ip", "-j", "route", "show", "table", "local"],
    ["ip", "-j", "route", "get", "127.0.0.1"],
    ["ip", "-j", "route", "get", "127.0.0.2"],
    ["ip", "-j", "-6", "route", "get", "::1"],
    ["getent", "ahosts", "localhost"],
    ["nft", "-j", "list", "ruleset"],
    ["iptables-save"],
    ["ip6tables-save"],
    ["ss", "-Htan"],  # every TCP socket: ports in use, TIME_WAIT per destination
    [
        "ss",
        "-Hltnp",
    ],  # listeners with their processes: the localhost-mismatch and firewall evidence
    [
        "sysctl",
        "net.ipv4.ip_local_port_range",
        "net.core.somaxconn",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.conf.all.route_localnet",
        "net.ipv6.conf.all.disable_ipv6",
        "net.ipv4.ping_group_range",
    ],
]


def shell_ladder(prefix: list[str]) -> float:
    t0 = time.perf_counter()
    for argv in SHELL_LADDER:
        subprocess.run([*prefix, *argv], capture_output=True, check=False)
    return time.perf_counter() - t0


def cli(netns: str | None) -> float:
    argv = [
        sys.executable,
        "-m",
        "loopscope",
        "doctor",
        "--rung",
        "1",
        "--json",
        "--fail-on",
        "never",
    ]
    if netns:
        argv += ["--netns", netns]
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - t0


def process(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - t0


def in_process(netns: str | None) -> tuple[float, float, int]:
    """Total rung-1 seconds, the snapshot's share, and the socket count."""
    from loopscope.analysis.doctor.ladder import judge
    from loopscope.doctor.gather import DoctorOptions, gather

    t0 = time.perf_counter()
    facts = gather([netns], DoctorOptions(max_rung=1))[0]
    judge(facts)
    total = time.perf_counter() - t0
    snap_s = (facts.snapshot.duration_ns or 0) / 1e9
    return total, snap_s, len(facts.snapshot.sockets)


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


def bench_place(netns: str | None, rounds: int) -> dict[str, object]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    rows: dict[str, list[float]] = {
        "in_process_s": [],
        "snapshot_s": [],
        "cli_s": [],
        "shell_ladder_s": [],
        "cli_app_import_s": [],
        "python_pass_s": [],
    }
    sockets = 0
    for _ in range(rounds):
        total, snap_s, sockets = in_process(netns)
        rows["in_process_s"].append(total)
        rows["snapshot_s"].append(snap_s)
        rows["cli_s"].append(cli(netns))
        rows["shell_ladder_s"].append(shell_ladder(prefix))
        rows["cli_app_import_s"].append(process([sys.executable, "-c", "import loopscope.cli.app"]))
        rows["python_pass_s"].append(process([sys.executable, "-c", "pass"]))
    out: dict[str, object] = {k + "_median": med(v) for k, v in rows.items()}
    out["probes_and_readers_s_median"] = med(
        [a - b for a, b in zip(rows["in_process_s"], rows["snapshot_s"], strict=False)]
    )
    out["cli_vs_shell_ladder_ratio"] = round(med(rows["cli_s"]) / med(rows["shell_ladder_s"]), 2)
    out["in_process_vs_shell_ladder_ratio"] = round(
        med(rows["in_process_s"]) / med(rows["shell_ladder_s"]), 2
    )
    out["goal_rung1_under_1s"] = med(rows["in_process_s"]) < 1.0 and med(rows["cli_s"]) < 1.0
    out["sockets_in_namespace"] = sockets
    out["raw"] = {k: [round(x, 4) for x in v] for k, v in rows.items()}
    return out


WORKER = r"""
import socket, sys
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4096)
keep = []
for i in range(n):
    c = socket.socket(); c.connect(srv.getsockname()); keep.append(c); keep.append(srv.accept()[0])
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.read()
"""
PER_WORKER = 8000  # 16000 fds per process, under this machine's 20000 open-file limit


def start_connections(netns: str, count: int) -> list[subprocess.Popen[str]]:
    """``count`` established loopback connections (2 sockets each) held by workers inside ``netns``."""
    workers = []
    left = count
    while left > 0:
        n = min(PER_WORKER, left)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", WORKER, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        workers.append(proc)
        left -= n
    return workers


def stop(workers: list[subprocess.Popen[str]]) -> None:
    for proc in workers:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "doctor.json"))
    parser.add_argument(
        "--conns", default="10000", help="also measure the netns holding N loopback connections"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("perf/doctor.py needs root (netns, raw ICMP)")
    name = f"ls-bench-doc-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        result = {
            "benchmark": "doctor rung 1",
            "rounds": args.rounds,
            "machine": {
                "kernel": platform.release(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "fresh_netns": bench_place(name, args.rounds),
            "host": bench_place(None, args.rounds),
        }
        for count in [int(x) for x in args.conns.split(",") if x.strip() and int(x) > 0]:
            workers = start_connections(name, count)
            try:
                result[f"netns_{count}_connections"] = bench_place(name, args.rounds)
            finally:
                stop(workers)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "raw"}
                for k, v in result.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

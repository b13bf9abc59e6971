"""Benchmark: `loopscope probe :PORT` over every local address of one port, when the service answers
in 1 ms (goal: < 50 ms), side by side with anchors, interleaved round by round, medians of ``--rounds``.

The service: a separate Python process (so it does not share our GIL) with a dual-stack ``[::]`` listener
(IPV6_V6ONLY off) that sleeps 1 ms per request before answering a 24-byte JSON body over HTTP/1.1,
so every candidate address (127.0.0.1, ::1, each host address, localhost) answers.

Measured each round:

- ``probe (library)``: :func:`loopscope.probes.run.run_probe` in a running Python (candidate list from
  rtnetlink + getaddrinfo, parallel connect + HTTP on every address, no diagnosis needed: all succeed).
- ``probe (CLI process)``: ``python -m loopscope probe :PORT --json``, interpreter start included.
- anchor ``http.client sequential``: the bare minimum in Python: one ``http.client`` GET per address of
  the same candidate list, one after the other, in this process.
- anchor ``curl sequential``: one ``curl -s -o /dev/null`` process per address, one after the other.

Usage: ``python perf/probe.py --rounds 9`` -> JSON on stdout and in perf/results/probe.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from loopscope.analysis.probe.target import parse_target  # noqa: E402  (after the sys.path line)
from loopscope.probes.run import run_probe  # noqa: E402  (after the sys.path line)
from loopscope.probes.target import local_candidates  # noqa: E402  (after the sys.path line)

SERVER = r"""
import http.server, json, socket, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        time.sleep(0.001)
        body = b'{"status": "ok", "n": 3}'
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
s = S(("::", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def _time(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "probe.json"))
    args = ap.parse_args()
    rounds = max(1, min(args.rounds, 50))
    srv = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        target = parse_target(f":{port}")
        cands = local_candidates(port)
        addrs = [c.address for c in cands]

        def lib() -> None:
            rep = run_probe(target, timeout_s=2.0)
            bad = [r.candidate.label for r in rep.results if not r.ok]
            if bad:
                raise SystemExit(f"probe failed on {bad}")

        def cli() -> None:
            subprocess.run(
                [sys.executable, "-m", "loopscope", "probe", f":{port}", "--json"],
                check=True,
                capture_output=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )

        def stdlib() -> None:
            for a in addrs:
                conn = http.client.HTTPConnection(a, port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()

        def curl() -> None:
            for a in addrs:
                host = f"[{a}]" if ":" in a else a
                subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "-g", f"http://{host}:{port}/"], check=True
                )

        series: dict[str, list[float]] = {
            "probe (library)": [],
            "probe (CLI process)": [],
            "http.client sequential": [],
        }
        if shutil.which("curl"):
            series["curl sequential"] = []
        lib()  # warm-up: imports, first rtnl read
        for _ in range(rounds):
            series["probe (library)"].append(_time(lib))
            series["http.client sequential"].append(_time(stdlib))
            series["probe (CLI process)"].append(_time(cli))
            if "curl sequential" in series:
                series["curl sequential"].append(_time(curl))
        med = {k: statistics.median(v) for k, v in series.items()}
        ratios = [
            a / b
            for a, b in zip(
                series["probe (library)"], series["http.client sequential"], strict=False
            )
        ]
        doc = {
            "benchmark": "probe over every local address of one port, service answering in 1 ms",
            "goal_s": 0.050,
            "addresses": [c.label for c in cands],
            "rounds": rounds,
            "median_s": {k: round(v, 5) for k, v in med.items()},
            "all_s": {k: [round(x, 5) for x in v] for k, v in series.items()},
            "median_ratio_library_vs_http_client_sequential": round(statistics.median(ratios), 3),
            "goal_met_library": med["probe (library)"] < 0.050,
            "machine": {
                "python": platform.python_version(),
                "kernel": platform.release(),
                "cpus": os.cpu_count(),
            },
        }
    finally:
        srv.kill()
        srv.wait(5)
    out = json.dumps(doc, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(out + "\n")
    print(out)


if __name__ == "__main__":
    main()

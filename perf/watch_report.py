"""Benchmark: the watch report and timeline of a window on a host with 50k TIME_WAIT and 50k established
loopback connections (pure: the WatchData is constructed, no socket is opened).

The window is what one ``loopscope top`` frame or a ``loopscope watch`` report hands to the analysis:
two snapshot samples, each with the same 50k long-lived established connections (keep-alive pools of
three apps, their client sockets owned by a few worker processes) and 50k TIME_WAIT sockets counted
per destination, plus a few thousand events (eBPF connects, destroy events and HTTP lines of 1,000
short-lived connections, some of them self-calls, and requests on 200 of the pooled connections).

Times :func:`~loopscope.analysis.watch.report.summarize_watch` and
:func:`~loopscope.analysis.watch.timeline.build_timeline` (median of ``--rounds``, seconds). Run it
once per code version with ``--label before`` / ``--label after``: each label is stored in the results
file (default perf/results/watch_report.json) next to the others, with a digest of the report's JSON
body so that two versions can be checked to give the same output.

Usage: ``python perf/watch_report.py --label after --rounds 5``
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import platform
import statistics
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from loopscope.analysis.watch.findings import check_watch
from loopscope.analysis.watch.model import (
    ListenerSample,
    PooledConnection,
    SnapshotSample,
    WatchData,
)
from loopscope.analysis.watch.report import summarize_watch
from loopscope.analysis.watch.timeline import build_timeline
from loopscope.model import Endpoint, Family, NetnsId, ProcessInfo, ProcessKey
from loopscope.model.events import (
    CloseEvent,
    ConnectEvent,
    ConnectKind,
    HttpEvent,
    HttpKind,
    SourceStatus,
)
from loopscope.render.jsonable import to_jsonable
from loopscope.watch.view import watch_json

S = 1_000_000_000
LO = IPv4Address("127.0.0.1")
NS = NetnsId(4, 4026531840)
T0 = 1_700_000_000 * S
WINDOW_S = 0.9


def _proc(pid: int, comm: str) -> ProcessInfo:
    return ProcessInfo(key=ProcessKey(pid, pid * 10), comm=comm, pgid=pid)


def build_data(established: int = 50_000, time_wait: int = 50_000, short: int = 1_000) -> WatchData:
    """A window of ``WINDOW_S`` seconds: see the module docstring.

    Args:
        established: long-lived connections seen in both samples.
        time_wait: TIME_WAIT sockets counted in each sample (toward the three listeners).
        short: short-lived connections opened in the window (each gives an ACTIVE and a PASSIVE eBPF
            event, two destroy events and a request and a status line).
    """
    nginx = [_proc(100, "nginx"), *(_proc(101 + k, "nginx") for k in range(4))]
    gunicorn = [_proc(200, "gunicorn"), *(_proc(201 + k, "gunicorn") for k in range(4))]
    redis = [_proc(300, "redis-server")]
    clients = [_proc(400 + k, "php-fpm") for k in range(8)]
    listeners = (
        ListenerSample(local=Endpoint(LO, 8080), accept_queue=3, backlog=511, owners=tuple(nginx)),
        ListenerSample(
            local=Endpoint(LO, 8000), accept_queue=0, backlog=128, owners=tuple(gunicorn)
        ),
        ListenerSample(local=Endpoint(LO, 6379), accept_queue=0, backlog=511, owners=tuple(redis)),
    )
    # long-lived pools: nginx workers -> gunicorn, php-fpm -> redis, nginx workers -> nginx (self)
    pooled = []
    for k in range(established):
        cport = 10_000 + k % 50_000
        caddr = IPv4Address(int(LO) + 1 + k // 50_000)
        if k % 3 == 0:
            server, owner = Endpoint(LO, 8000), nginx[1 + k % 4]
        elif k % 3 == 1:
            server, owner = Endpoint(LO, 6379), clients[k % len(clients)]
        else:
            server, owner = Endpoint(LO, 8080), nginx[1 + k % 4]
        pooled.append(
            PooledConnection(
                client=Endpoint(caddr, cport),
                server=server,
                client_cookie=1_000_000 + 2 * k,
                server_cookie=1_000_001 + 2 * k,
                client_owners=(owner,),
            )
        )
    ephemeral = {"127.0.0.1:8080/tcp": time_wait // 2, "127.0.0.1:8000/tcp": time_wait // 2}
    samples = tuple(
        SnapshotSample(
            at_ns=T0 + int(at_s * S),
            listeners=listeners,
            established=tuple(pooled),
            time_wait=time_wait + 120,
            ephemeral_in_use=dict(ephemeral),
            ephemeral_range=(32768, 60999),
            host_addresses=frozenset({LO}),
        )
        for at_s in (0.05, 0.85)
    )
    connects, closes, http = [], [], []
    step_ns = int(WINDOW_S * S) // (short + 1)
    for k in range(short):
        at = T0 + (k + 1) * step_ns
        client = Endpoint(LO, 40_000 + k)
        self_call = k % 4 == 0
        server = Endpoint(LO, 8080)
        pid = nginx[1 + k % 4].key.pid if self_call else 900 + k % 50
        ccookie, scookie = 5_000_000 + 2 * k, 5_000_001 + 2 * k
        connects.append(
            ConnectEvent(
                at_ns=at,
                kind=ConnectKind.ACTIVE,
                family=Family.INET,
                local=client,
                remote=server,
                cookie=ccookie,
                pid=pid,
                comm="nginx" if self_call else "curl",
            )
        )
        connects.append(
            ConnectEvent(
                at_ns=at + 20_000,
                kind=ConnectKind.PASSIVE,
                family=Family.INET,
                local=server,
                remote=client,
                cookie=scookie,
            )
        )
        http.append(
            HttpEvent(
                at_ns=at + 40_000,
                kind=HttpKind.REQUEST,
                client=client,
                server=server,
                method="GET",
                path="/self" if self_call else "/ext",
            )
        )
        http.append(
            HttpEvent(
                at_ns=at + 300_000, kind=HttpKind.RESPONSE, client=client, server=server, status=200
            )
        )
        for local, remote, cookie in ((client, server, ccookie), (server, client, scookie)):
            closes.append(
                CloseEvent(
                    at_ns=at + 400_000,
                    family=Family.INET,
                    local=local,
                    remote=remote,
                    cookie=cookie,
                    netns=NS,
                )
            )
    for k in range(0, min(established, 600), 3):  # requests on 200 pooled nginx -> gunicorn conns
        pc = pooled[k]
        at = T0 + int(0.1 * S) + k * 1_000_000
        http.append(
            HttpEvent(
                at_ns=at,
                kind=HttpKind.REQUEST,
                client=pc.client,
                server=pc.server,
                method="POST",
                path="/api",
            )
        )
        http.append(
            HttpEvent(
                at_ns=at + 2_000_000,
                kind=HttpKind.RESPONSE,
                client=pc.client,
                server=pc.server,
                status=201,
            )
        )
    return WatchData(
        started_ns=T0,
        ended_ns=T0 + int(WINDOW_S * S),
        connects=tuple(connects),
        closes=tuple(closes),
        http=tuple(http),
        samples=samples,
        processes={p.key.pid: p for p in nginx},
        sources=(
            SourceStatus(name="ebpf_sockops", active=True, events=len(connects)),
            SourceStatus(name="sock_diag_destroy", active=True, events=len(closes)),
            SourceStatus(name="http_capture", active=True, events=len(http)),
        ),
    )


def _median_s(fn: Any, rounds: int) -> tuple[float, list[float], Any]:
    times, out = [], None
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), [round(x, 4) for x in times], out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="after", help="name of this run in the results file")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "watch_report.json"
    )
    args = ap.parse_args()
    data = build_data()
    rep_s, rep_all, report = _median_s(lambda: summarize_watch(data), args.rounds)
    findings = check_watch(report)
    tl_s, tl_all, timeline = _median_s(lambda: build_timeline(data, report, findings), args.rounds)
    if "expand_idle" in inspect.signature(summarize_watch).parameters:  # the per-connection path
        ref = summarize_watch(data, expand_idle=True)
        ref_body = json.dumps(
            to_jsonable(watch_json(ref, check_watch(ref))), sort_keys=True, default=str
        )
        ref_tl = json.dumps(
            to_jsonable(build_timeline(data, ref, check_watch(ref))), sort_keys=True, default=str
        )
    body = json.dumps(to_jsonable(watch_json(report, findings)), sort_keys=True, default=str)
    tl_body = json.dumps(to_jsonable(timeline), sort_keys=True, default=str)
    run = {
        "summarize_watch_s": round(rep_s, 4),
        "build_timeline_s": round(tl_s, 4),
        "frame_s": round(rep_s + tl_s, 4),
        "summarize_watch_rounds_s": rep_all,
        "build_timeline_rounds_s": tl_all,
        "report_instances": len(report.instances),
        "report_json_sha256": hashlib.sha256(body.encode()).hexdigest(),
        "timeline_sha256": hashlib.sha256(tl_body.encode()).hexdigest(),
        "python": platform.python_version(),
    }
    if "expand_idle" in inspect.signature(summarize_watch).parameters:
        run["same_report_as_per_connection_path"] = ref_body == body
        run["same_timeline_as_per_connection_path"] = ref_tl == tl_body
    results: dict[str, Any] = {}
    if args.out.exists():
        results = json.loads(args.out.read_text())
    results.setdefault("input", {})
    results["input"] = {
        "established": 50_000,
        "time_wait": 50_000,
        "samples": len(data.samples),
        "connects": len(data.connects),
        "closes": len(data.closes),
        "http": len(data.http),
        "window_s": WINDOW_S,
    }
    results.setdefault("runs", {})[args.label] = run
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({args.label: run}, indent=2))


if __name__ == "__main__":
    main()

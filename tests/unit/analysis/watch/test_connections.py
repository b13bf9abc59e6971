"""Idle connections (snapshots only, no event in the window) are counted per destination and client
process, and the report they give is the per-connection path's (``expand_idle=True``)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, ip_address

from loopscope.analysis.watch.connections import (
    IdleGroup,
    Instance,
    build_instances,
    find_window_apps,
    join_connections,
)
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
from loopscope.watch.view import watch_json

S = 1_000_000_000
T0 = 1_700_000_000 * S
NS = NetnsId(4, 4026531840)


def proc(pid: int, comm: str) -> ProcessInfo:
    return ProcessInfo(key=ProcessKey(pid, pid * 10), comm=comm, pgid=pid)


def ep(port: int, addr: str = "127.0.0.1") -> Endpoint:
    return Endpoint(ip_address(addr), port)


WEB, WORKER, API, CLI = proc(10, "web"), proc(11, "web"), proc(20, "api"), proc(30, "cron")


def pooled(
    k: int, server: Endpoint, *owners: ProcessInfo, cookies: bool = True
) -> PooledConnection:
    client = ep(50_000 + k, "10.0.0.5" if k >= 90 else "127.0.0.1")
    return PooledConnection(
        client=client,
        server=server,
        client_cookie=1000 + 2 * k if cookies else None,
        server_cookie=1001 + 2 * k if cookies else None,
        client_owners=owners,
    )


def mixed_window() -> WatchData:
    """Two apps (web :8080, api :9000); events on a few connections, many idle pooled ones."""
    listeners = (
        ListenerSample(local=ep(8080), accept_queue=0, backlog=128, owners=(WEB, WORKER)),
        ListenerSample(local=ep(9000), accept_queue=0, backlog=128, owners=(API,)),
    )
    first = [
        *(pooled(k, ep(9000), WORKER) for k in range(0, 30)),  # web -> api, idle
        *(pooled(k, ep(8080), WORKER) for k in range(30, 40)),  # web -> web (self), idle
        *(pooled(k, ep(8080), CLI) for k in range(40, 50)),  # cron -> web, idle
        *(pooled(k, ep(8080)) for k in range(50, 55)),  # owner learnt from the second sample
        *(pooled(k, ep(7777), CLI) for k in range(55, 58)),  # no listener seen on 7777
        pooled(60, ep(9000), WORKER),  # carries HTTP lines: an instance
        pooled(61, ep(9000), WORKER),  # a client close by cookie, never opened in the window: idle
        pooled(62, ep(8080), cookies=False),  # no cookie: counted again in each sample
        *(pooled(k, ep(8080), CLI) for k in range(90, 93)),  # from a remote host
    ]
    second = [
        dataclasses.replace(p, client_owners=(CLI,)) if 50 <= p.client.port - 50_000 < 55 else p
        for p in first
    ]
    samples = tuple(
        SnapshotSample(
            at_ns=T0 + int(at * S),
            listeners=listeners,
            established=tuple(est),
            time_wait=500,
            ephemeral_in_use={"127.0.0.1:8080/tcp": 40},
            ephemeral_range=(32768, 60999),
            host_addresses=frozenset({IPv4Address("127.0.0.1")}),
        )
        for at, est in ((0.1, first), (0.9, second))
    )
    connects, closes, http = [], [], []
    for k in range(6):  # short-lived: web self-calls (k even) and curl (exited) -> web
        at, client, server = T0 + (k + 1) * S // 10, ep(40_000 + k), ep(8080)
        connects += [
            ConnectEvent(
                at_ns=at,
                kind=ConnectKind.ACTIVE,
                family=Family.INET,
                local=client,
                remote=server,
                cookie=500 + 2 * k,
                pid=10 if k % 2 == 0 else 99,
                comm="web" if k % 2 == 0 else "curl",
            ),
            ConnectEvent(
                at_ns=at + 1000,
                kind=ConnectKind.PASSIVE,
                family=Family.INET,
                local=server,
                remote=client,
                cookie=501 + 2 * k,
            ),
        ]
        http += [
            HttpEvent(
                at_ns=at + 2000,
                kind=HttpKind.REQUEST,
                client=client,
                server=server,
                method="GET",
                path="/p",
            ),
            HttpEvent(
                at_ns=at + 9000, kind=HttpKind.RESPONSE, client=client, server=server, status=200
            ),
        ]
    pc60 = pooled(60, ep(9000), WORKER)
    http.append(
        HttpEvent(
            at_ns=T0 + S // 2,
            kind=HttpKind.REQUEST,
            client=pc60.client,
            server=pc60.server,
            method="POST",
            path="/api",
        )
    )
    pc61 = pooled(61, ep(9000), WORKER)
    closes.append(
        CloseEvent(
            at_ns=T0 + S // 3,
            family=Family.INET,
            local=pc61.client,
            remote=pc61.server,
            cookie=1000 + 2 * 61,
            netns=NS,
        )
    )
    return WatchData(
        started_ns=T0,
        ended_ns=T0 + S,
        connects=tuple(connects),
        closes=tuple(closes),
        http=tuple(http),
        samples=samples,
        processes={10: WEB, 11: WORKER},
        sources=(
            SourceStatus(name="ebpf_sockops", active=True),
            SourceStatus(name="sock_diag_destroy", active=True),
            SourceStatus(name="http_capture", active=True),
        ),
    )


def test_idle_connections_are_counted_not_expanded() -> None:
    data = mixed_window()
    joined = join_connections(data, find_window_apps(data))
    insts = [e for e in joined if isinstance(e, Instance)]
    groups = [e for e in joined if isinstance(e, IdleGroup)]
    assert len(insts) == 6 + 1  # the short-lived ones and the pooled one with an HTTP line
    assert sum(g.connections for g in groups) == 30 + 1 + 10 + 10 + 5 + 3 + 2 + 3
    web_api = [g for g in groups if g.server == ep(9000)]
    assert [(g.client_pid, g.connections) for g in web_api] == [(11, 31)]
    learnt = [g for g in groups if g.client_pid == 30 and g.server == ep(8080)]
    assert sum(g.connections for g in learnt) == 10 + 5 + 3  # the remote client's too
    expanded = build_instances(data, find_window_apps(data))
    assert len(expanded) == len(insts) + sum(g.connections for g in groups)


def test_aggregated_report_is_the_per_connection_report() -> None:
    data = mixed_window()
    fast, slow = summarize_watch(data), summarize_watch(data, expand_idle=True)
    assert len(fast.instances) == 7 and len(slow.instances) == 7 + 64 and not slow.idle
    strip = {"instances": (), "idle": ()}
    assert dataclasses.replace(fast, **strip) == dataclasses.replace(slow, **strip)
    ff, sf = check_watch(fast), check_watch(slow)
    assert ff == sf
    assert watch_json(fast, ff) == watch_json(slow, sf)
    assert build_timeline(data, fast, ff) == build_timeline(data, slow, sf)
    assert fast.connections == 7 + 64 - 3  # 7777 has no listener
    (web_api,) = [e for e in fast.edges if e.port == 9000]
    assert web_api.connections == 32 and web_api.requests == 1


def test_timeline_series_follow_the_report_edges() -> None:
    data = mixed_window()
    report = summarize_watch(data)
    tl = build_timeline(data, report, bucket_s=0.5)
    by_label = {e.label: e for e in tl.edges}
    curl = next(e for lbl, e in by_label.items() if lbl.startswith("curl"))
    # curl exited before /proc was read: the report names it by its eBPF comm and so does the series
    assert sum(r * 0.5 for r in curl.rates_per_s) == 3
    rebuilt = build_timeline(data, dataclasses.replace(report, edge_opens_ns=None), bucket_s=0.5)
    assert rebuilt == tl

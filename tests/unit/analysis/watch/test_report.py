"""Pure watch analysis: joins across sources, amplification, per-path factor, pressure and findings.

Inputs are built event by event with known ground truth (what a real run delivers, in the model types).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from loopscope.analysis.apps import AppKey
from loopscope.analysis.watch.findings import check_watch, correlation
from loopscope.analysis.watch.model import (
    ListenerSample,
    PooledConnection,
    SnapshotSample,
    WatchData,
    sample_snapshot,
)
from loopscope.analysis.watch.report import summarize_watch
from loopscope.backends.linux.http_capture import parse_packet, parse_path_key
from loopscope.backends.linux.sock_diag_destroy import parse_destroy_datagram
from loopscope.model import (
    Endpoint,
    Family,
    NetnsId,
    ProcessInfo,
    ProcessKey,
    Proto,
    Snapshot,
    SocketRecord,
    TcpState,
)
from loopscope.model.events import (
    CloseEvent,
    ConnectEvent,
    ConnectKind,
    HttpEvent,
    HttpKind,
    SourceStatus,
)
from loopscope.watch.view import self_path_rows, watch_json

LO = IPv4Address("127.0.0.1")
NS = NetnsId(4, 4026531840)
S = 1_000_000_000
EBPF = SourceStatus(name="ebpf_sockops", active=True)
DESTROY = SourceStatus(name="sock_diag_destroy", active=True)
HTTP = SourceStatus(name="http_capture", active=True)


def proc(pid: int, comm: str = "app", pgid: int | None = None) -> ProcessInfo:
    return ProcessInfo(
        key=ProcessKey(pid, pid * 10), comm=comm, pgid=pgid if pgid is not None else pid
    )


def ep(port: int, addr: str = "127.0.0.1") -> Endpoint:
    return Endpoint(ip_address(addr), port)


def listener(port: int, *owners: ProcessInfo, queue: int = 0, backlog: int = 128) -> ListenerSample:
    return ListenerSample(local=ep(port), accept_queue=queue, backlog=backlog, owners=owners)


def sample(
    at_s: float,
    *listeners: ListenerSample,
    established: tuple[PooledConnection, ...] = (),
    ephemeral: dict[str, int] | None = None,
    time_wait: int = 0,
) -> SnapshotSample:
    return SnapshotSample(
        at_ns=int(at_s * S),
        listeners=listeners,
        established=established,
        time_wait=time_wait,
        ephemeral_in_use=ephemeral or {},
        ephemeral_range=(32768, 60999),
        host_addresses=frozenset({LO, IPv4Address("192.0.2.2")}),
    )


class Conn:
    """Builds the events one connection produces: eBPF active + passive, two destroys, HTTP lines."""

    cookie = 100

    def __init__(
        self,
        client_port: int,
        server_port: int,
        pid: int | None,
        at_s: float,
        *,
        path: str | None = None,
        dur_s: float = 0.01,
        addr: str = "127.0.0.1",
    ) -> None:
        Conn.cookie += 2
        self.c, self.s = ep(client_port, addr), ep(server_port, addr)
        t = int(at_s * S)
        self.connects = [
            ConnectEvent(
                at_ns=t,
                kind=ConnectKind.ACTIVE,
                family=Family.INET,
                local=self.c,
                remote=self.s,
                cookie=Conn.cookie,
                pid=pid,
                tid=pid,
            ),
            ConnectEvent(
                at_ns=t + 1000,
                kind=ConnectKind.PASSIVE,
                family=Family.INET,
                local=self.s,
                remote=self.c,
                cookie=Conn.cookie + 1,
            ),
        ]
        end = t + int(dur_s * S)
        self.closes = [
            CloseEvent(
                at_ns=end,
                family=Family.INET,
                local=self.c,
                remote=self.s,
                cookie=Conn.cookie,
                netns=NS,
            ),
            CloseEvent(
                at_ns=end + 1000,
                family=Family.INET,
                local=self.s,
                remote=self.c,
                cookie=Conn.cookie + 1,
                netns=NS,
            ),
        ]
        self.http: list[HttpEvent] = []
        if path is not None:
            self.http = [
                HttpEvent(
                    at_ns=t + 2000,
                    kind=HttpKind.REQUEST,
                    client=self.c,
                    server=self.s,
                    method="GET",
                    path=path,
                ),
                HttpEvent(
                    at_ns=end - 2000,
                    kind=HttpKind.RESPONSE,
                    client=self.c,
                    server=self.s,
                    status=200,
                ),
            ]


def data(
    conns: list[Conn],
    samples: tuple[SnapshotSample, ...],
    sources: tuple[SourceStatus, ...],
    processes: dict[int, ProcessInfo] | None = None,
    *,
    ebpf: bool = True,
    extra_http: list[HttpEvent] = (),
) -> WatchData:  # type: ignore[assignment]
    return WatchData(
        started_ns=0,
        ended_ns=10 * S,
        connects=tuple(e for c in conns for e in c.connects) if ebpf else (),
        closes=tuple(e for c in conns for e in c.closes),
        http=tuple(e for c in conns for e in c.http) + tuple(extra_http),
        samples=samples,
        processes=processes or {},
        sources=sources,
    )


def self_calling_app(
    n: int, externals: int
) -> tuple[list[Conn], tuple[SnapshotSample, ...], dict[int, ProcessInfo]]:
    master, worker, client = (
        proc(10, "gunicorn"),
        proc(11, "gunicorn", pgid=10),
        proc(99, "loadgen"),
    )
    conns, port = [], 40000
    for k in range(externals):
        t0 = 1.0 + k
        conns.append(Conn(port, 8080, 99, t0, path="/work", dur_s=0.5))
        port += 1
        for j in range(n):
            conns.append(Conn(port, 8080, 11, t0 + 0.01 + 0.1 * j, path="/leaf", dur_s=0.05))
            port += 1
    samples = (
        sample(0.5, listener(8080, master, worker)),
        sample(9.5, listener(8080, master, worker)),
    )
    return conns, samples, {11: worker, 99: client}


def test_amplification_exact_with_ebpf_and_http() -> None:
    conns, samples, procs = self_calling_app(n=3, externals=4)
    report = summarize_watch(data(conns, samples, (EBPF, DESTROY, HTTP), procs))
    (app,) = report.apps
    assert app.name == "gunicorn[10,11]" and app.ports == (8080,)
    assert (app.external_connections, app.external_requests) == (4, 4)
    assert (app.self_connections, app.self_requests) == (12, 12)
    assert app.self_factor == 3.0 and app.total_factor == 3.0 and app.unit == "requests"
    assert app.per_path_factor == {"/work": 3.0}
    assert app.external_paths == {"/work": 4} and app.statuses == {200: 16}
    assert report.connections == 16 and report.client_pid_known == 16
    self_edge = next(e for e in report.edges if e.self_call)
    assert (
        self_edge.connections == 12 and self_edge.client_pids == (11,) and self_edge.requests == 12
    )
    ext_edge = next(e for e in report.edges if not e.self_call)
    assert ext_edge.client == "loadgen[99]" and ext_edge.connections == 4
    codes = [(f.code, f.severity.value) for f in check_watch(report)]
    assert ("SELF_CALL_ON_HOT_PATH", "high") in codes and ("SELF_CALL", "low") in codes


def test_without_http_connections_stand_in_for_requests() -> None:
    conns, samples, procs = self_calling_app(n=1, externals=5)
    report = summarize_watch(data(conns, samples, (EBPF, DESTROY), procs))
    (app,) = report.apps
    assert app.unit == "connections" and app.external_requests is None and app.self_requests is None
    assert app.self_factor == 1.0 and app.per_path_factor == {}
    assert "SELF_CALL_ON_HOT_PATH" in {
        f.code for f in check_watch(report)
    }  # factor >= 1 is the threshold


def test_refused_connect_is_not_a_connection() -> None:
    conns, samples, procs = self_calling_app(n=0, externals=1)
    refused = Conn(45000, 8080, 99, 5.0)
    refused.connects = refused.connects[:1]  # no server side
    refused.closes = refused.closes[:1]
    report = summarize_watch(data([*conns, refused], samples, (EBPF, DESTROY), procs))
    assert report.refused == 1 and report.connections == 1
    assert report.apps[0].external_connections == 1


def test_destroy_only_counts_from_the_server_side_and_sees_client_rst() -> None:
    conns, samples, procs = self_calling_app(n=2, externals=3)
    rst = conns[1]
    rst.closes[0] = CloseEvent(
        at_ns=rst.closes[0].at_ns,
        family=Family.INET,
        local=Endpoint(IPv4Address(0), rst.c.port),
        remote=Endpoint(LO, 0),
        cookie=rst.closes[0].cookie,
        netns=NS,
    )
    report = summarize_watch(data(conns, samples, (DESTROY,), procs, ebpf=False))
    (app,) = report.apps
    assert report.connections == 9 and report.client_pid_known == 0
    # without eBPF, short connections have no client pid: every one looks external
    assert app.external_connections == 9 and app.self_connections == 0
    assert report.client_rst == 1
    assert [e.client for e in report.edges] == ["?"]


def test_keep_alive_pool_from_snapshots_counts_requests() -> None:
    worker = proc(11, "gunicorn", pgid=10)
    pool = PooledConnection(
        client=ep(50000), server=ep(8080), client_cookie=7, server_cookie=8, client_owners=(worker,)
    )
    samples = (sample(0.5, listener(8080, proc(10, "gunicorn"), worker), established=(pool,)),)
    ext = Conn(40000, 8080, 99, 1.0, path="/work", dur_s=1.0)
    reqs = [
        HttpEvent(
            at_ns=int((1.1 + 0.1 * k) * S),
            kind=HttpKind.REQUEST,
            client=ep(50000),
            server=ep(8080),
            method="GET",
            path="/leaf",
        )
        for k in range(5)
    ]
    report = summarize_watch(
        data([ext], samples, (EBPF, DESTROY, HTTP), {99: proc(99, "loadgen")}, extra_http=reqs)
    )
    (app,) = report.apps
    assert app.self_connections == 1 and app.self_requests == 5 and app.external_requests == 1
    assert app.self_factor == 5.0 and app.per_path_factor == {"/work": 5.0}


def test_chain_is_not_a_self_call() -> None:
    nginx, backend, gen = proc(20, "nginx"), proc(30, "python"), proc(99, "loadgen")
    conns = []
    for k in range(3):
        conns.append(Conn(41000 + k, 80, 99, 1 + k, path="/x"))
        conns.append(Conn(42000 + k, 9000, 20, 1.001 + k, path="/x"))
    samples = (sample(0.5, listener(80, nginx), listener(9000, backend)),)
    report = summarize_watch(data(conns, samples, (EBPF, DESTROY, HTTP), {20: nginx, 99: gen}))
    front, back = report.apps
    assert (front.external_requests, front.outbound_requests, front.self_connections) == (3, 3, 0)
    assert (back.external_requests, back.self_connections) == (3, 0)
    assert front.total_factor == 1.0 and front.self_factor == 0.0
    assert not any(e.self_call for e in report.edges)
    assert not [f for f in check_watch(report) if f.code.startswith("SELF_CALL")]


def test_accept_queue_and_ephemeral_pressure_findings() -> None:
    app = proc(10)
    samples = (
        sample(
            1, listener(8080, app, queue=5, backlog=128), ephemeral={"127.0.0.1:8080/tcp": 1000}
        ),
        sample(
            2, listener(8080, app, queue=128, backlog=128), ephemeral={"127.0.0.1:8080/tcp": 20000}
        ),
    )
    report = summarize_watch(data([], samples, (EBPF,)))
    (lp,) = report.listeners
    assert (lp.max_accept_queue, lp.saturated_samples, lp.samples, lp.backlog) == (128, 1, 2, 128)
    assert report.ephemeral_range_size == 28232
    codes = {f.code for f in check_watch(report)}
    assert codes == {"ACCEPT_QUEUE_SATURATED", "EPHEMERAL_PORT_PRESSURE"}


def _health_run(slow_with_load: bool) -> list[str]:
    app = proc(10)
    conns, port = [], 30000
    for second in range(8):
        in_flight = second  # 0..7 /api requests in flight when the health check runs
        for k in range(in_flight):
            conns.append(Conn(port, 8080, 99, second + 0.001 * k, path="/api", dur_s=0.5))
            port += 1
        lat_s = 0.002 * (1 + in_flight) if slow_with_load else 0.002 * (1 + (second * 5) % 7)
        conns.append(Conn(port, 8080, 98, second + 0.05, path="/healthz", dur_s=lat_s))
        port += 1
    report = summarize_watch(
        data(conns, (sample(0.1, listener(8080, app)),), (EBPF, DESTROY, HTTP))
    )
    return [f.subject for f in check_watch(report) if f.code == "HEALTH_CHECK_SLOW_UNDER_LOAD"]


def test_health_check_slow_under_load() -> None:
    (subject,) = _health_run(slow_with_load=True)
    assert subject.endswith("/healthz")
    assert _health_run(slow_with_load=False) == []  # slow at times, but not with the load


def test_correlation() -> None:
    assert correlation([1, 2, 3], [2, 4, 6]) == 1.0
    assert correlation([1, 1, 1], [1, 2, 3]) is None
    assert correlation([1, 2], [1, 2]) is None


def test_sample_snapshot_adds_time_wait_to_ephemeral_counts() -> None:
    owner = proc(10)
    lst = SocketRecord(
        proto=Proto.TCP,
        family=Family.INET,
        state=TcpState.LISTEN,
        local=ep(8080, "0.0.0.0"),
        remote=ep(0, "0.0.0.0"),
        netns=NS,
        inode=5,
        accept_queue=2,
        backlog=64,
        owners=(owner.key,),
    )
    snap = Snapshot(
        taken_at_ns=S,
        netns=NS,
        netns_label="host",
        source="sock_diag",
        sockets=(lst,),
        processes={owner.key: owner},
    )
    s = sample_snapshot(snap, {ep(8080): 300, ep(443, "192.0.2.9"): 7})
    assert s.time_wait == 307
    assert s.ephemeral_in_use == {"127.0.0.1:8080/tcp": 300}
    assert s.listeners[0].accept_queue == 2 and s.listeners[0].owners == (owner,)
    assert sample_snapshot(snap, listeners_only=True).time_wait is None


def test_recorded_destroy_events_join_to_server_side_counts() -> None:
    rec = json.loads((Path(__file__).parent / "fixtures" / "destroy.json").read_text())
    closes = [
        e
        for g in rec["datagrams"]
        for e in parse_destroy_datagram(bytes.fromhex(g), netns=NS, at_ns=S)
    ]
    port = rec["server_port"]
    server_side = [e for e in closes if e.local.port == port]
    assert sorted(e.remote.port for e in server_side) == sorted(
        c["client_port"] for c in rec["cases"]
    )
    rst_port = next(c["client_port"] for c in rec["cases"] if c["rst"])
    (rst,) = [e for e in closes if e.local.port == rst_port]
    assert rst.remote.port == 0  # the client end that sent RST lost its peer
    normal = next(e for e in closes if e.local.port != port and e.remote.port == port)
    assert normal.tcp_info is not None and normal.tcp_info.bytes_sent == 4  # "ping"
    wd = WatchData(
        started_ns=0,
        ended_ns=2 * S,
        closes=tuple(closes),
        sources=(DESTROY,),
        samples=(sample(0.5, listener(port, proc(10))),),
    )
    report = summarize_watch(wd)
    assert report.connections == 2 and report.client_rst == 1
    # up: client bytes_sent 4 + (RST case, no client counters) server bytes_received 4 - 1 for a FIN it never
    # got = 7; down: server bytes_sent 5 + 5
    assert report.edges[0].bytes_to_server == 7 and report.edges[0].bytes_to_client == 10


def test_lean_destroy_parser_agrees_with_the_sock_diag_parser() -> None:
    from loopscope.backends.linux.netlink import parse_messages
    from loopscope.backends.linux.sock_diag import parse_inet_diag_msg

    rec = json.loads((Path(__file__).parent / "fixtures" / "destroy.json").read_text())
    n = 0
    for g in rec["datagrams"]:
        for msg in parse_messages(bytes.fromhex(g)):
            full = parse_inet_diag_msg(msg.payload, proto=Proto.TCP, netns=NS)
            (lean,) = parse_destroy_datagram(msg_bytes(msg), netns=NS, at_ns=1)
            assert (lean.local, lean.remote, lean.cookie, lean.family) == (
                full.local,
                full.remote,
                full.cookie,
                full.family,
            )
            assert full.tcp_info is not None and lean.tcp_info is not None
            assert (
                lean.tcp_info.bytes_sent,
                lean.tcp_info.bytes_received,
                lean.tcp_info.bytes_acked,
            ) == (full.tcp_info.bytes_sent, full.tcp_info.bytes_received, full.tcp_info.bytes_acked)
            n += 1
    assert n == 4


def msg_bytes(msg: object) -> bytes:
    from loopscope.backends.linux.netlink import pack_message

    return pack_message(msg.type, msg.flags, msg.seq, msg.payload)  # type: ignore[attr-defined]


def named(conn: Conn, comm: str | None) -> Conn:
    """The connection as eBPF reports it with the caller's comm captured at connect time."""
    conn.connects[0] = dataclasses.replace(conn.connects[0], comm=comm)
    return conn


def test_short_lived_clients_are_one_row_named_at_connect_time() -> None:
    apache = proc(10, "apache2")
    # 300 curl processes, each exited before /proc was read (eBPF gave pid and comm), one read alive,
    # one client whose name eBPF could not give (pid only), and the app calling itself
    conns = [named(Conn(40000 + k, 8095, 1000 + k, 1 + k * 0.01), "curl") for k in range(300)]
    conns.append(Conn(41000, 8095, 2000, 5.0))  # read from /proc: curl[2000]
    conns.append(Conn(41001, 8095, 3000, 5.1))  # pid only
    conns += [named(Conn(42000 + k, 8095, 10, 6 + k * 0.1), "apache2") for k in range(3)]
    samples = (sample(0.5, listener(8095, apache)), sample(9.5, listener(8095, apache)))
    report = summarize_watch(
        data(conns, samples, (EBPF, DESTROY), {2000: proc(2000, "curl"), 10: apache})
    )
    rows = [(e.client, e.server, e.port, e.connections, e.self_call) for e in report.edges]
    assert rows == [
        ("curl (301 processes)", "apache2[10]", 8095, 301, False),
        ("apache2[10]", "apache2[10]", 8095, 3, True),
        ("pid 3000", "apache2[10]", 8095, 1, False),
    ]
    curl = report.edges[0]
    assert curl.client_app == AppKey(comm="curl")
    assert curl.client_pids == (*range(1000, 1300), 2000)  # every pid, for --json
    doc = watch_json(report, [])
    assert doc["edges"][0]["client"] == "curl (301 processes)"
    assert doc["edges"][0]["client_pids"] == curl.client_pids
    (app,) = report.apps
    assert app.external_connections == 302 and app.self_connections == 3


def test_one_short_lived_client_keeps_its_pid_in_the_label() -> None:
    apache = proc(10, "apache2")
    conns = [named(Conn(40000, 8095, 1234, 1.0), "curl")]
    report = summarize_watch(data(conns, (sample(0.5, listener(8095, apache)),), (EBPF, DESTROY)))
    assert [e.client for e in report.edges] == ["curl[1234]"]


def test_self_call_paths_keep_the_routing_query_apart() -> None:
    apache = proc(10, "apache2")
    conns, port = [], 40000
    routed = {"/?rest_route=/a": 2, "/?rest_route=/b": 3, "/wp-cron.php": 1}
    for k in range(4):  # 4 external page views, each making 6 self-calls
        t0 = 1.0 + k
        conns.append(named(Conn(port, 8095, 99, t0, path="/page", dur_s=0.8), "curl"))
        port += 1
        j = 0
        for path, n in routed.items():
            for _ in range(n):
                c = Conn(port, 8095, 10, t0 + 0.01 + 0.1 * j, path=path, dur_s=0.05)
                if path.endswith(".php"):
                    c.http[0] = dataclasses.replace(c.http[0], method="POST")
                conns.append(c)
                port, j = port + 1, j + 1
    samples = (sample(0.5, listener(8095, apache)), sample(9.5, listener(8095, apache)))
    report = summarize_watch(data(conns, samples, (EBPF, DESTROY, HTTP), {10: apache}))
    (app,) = report.apps
    assert app.self_paths == {
        "GET /?rest_route=/b": 12,
        "GET /?rest_route=/a": 8,
        "POST /wp-cron.php": 4,
    }
    assert list(app.self_paths) == [
        "GET /?rest_route=/b",
        "GET /?rest_route=/a",
        "POST /wp-cron.php",
    ]
    assert app.per_path_factor == {"/page": 6.0}
    rows = self_path_rows(report.apps)
    assert rows[0] == {"call": "apache2[10] -> apache2[10]: GET /?rest_route=/b", "requests": 12}


def test_external_query_routed_paths_have_their_own_amplification() -> None:
    apache = proc(10, "apache2")
    conns, port = [], 40000
    for k, (route, n) in enumerate([("/?rest_route=/slow", 3), ("/?rest_route=/fast", 0)] * 3):
        t0 = 1.0 + k
        conns.append(named(Conn(port, 8095, 99, t0, path=route, dur_s=0.8), "curl"))
        port += 1
        for j in range(n):
            conns.append(Conn(port, 8095, 10, t0 + 0.01 + 0.1 * j, path="/?rest_route=/leaf"))
            port += 1
    samples = (sample(0.5, listener(8095, apache)),)
    (app,) = summarize_watch(data(conns, samples, (EBPF, DESTROY, HTTP), {10: apache})).apps
    assert app.per_path_factor == {"/?rest_route=/slow": 3.0, "/?rest_route=/fast": 0.0}
    assert app.external_paths == {"/?rest_route=/slow": 3, "/?rest_route=/fast": 3}


def test_path_key_rule() -> None:
    cases = {
        "/?rest_route=/a": "/?rest_route=/a",
        "/?rest_route=/b&_locale=user": "/?rest_route=/b",
        "/?_locale=user&rest_route=/b": "/?rest_route=/b",  # the first routing parameter
        "/?rest_route=/wp/v2/posts/123&_embed=1": "/?rest_route=/wp/v2/posts/{id}",
        "/?rest_route=%2Fwp%2Fv2%2Fusers%2Fme": "/?rest_route=/wp/v2/users/me",
        "/?rest_route=/a/b/c/d/e/f/g/h": "/?rest_route=/a/b/c/d/e/f",
        "/wp-cron.php?doing_wp_cron=1700000000.1": "/wp-cron.php",
        "/wp-admin/admin-ajax.php?action=heartbeat": "/wp-admin/admin-ajax.php?action=heartbeat",
        "/index.php?r=site/login": "/index.php?r=site/login",
        "/?q=node/12": "/?q=node/12",
        "/?p=42": "/",  # an id, not a route
        "/api/items?route=/x": "/api/items",  # not a front controller: the query goes
        "/a": "/a",
        "/": "/",
    }
    assert {t: parse_path_key(t) for t in cases} == cases


def test_captured_request_line_carries_the_path_key() -> None:
    payload = b"GET /?rest_route=/wp/v2/posts/7&x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, LO.packed, LO.packed
    )
    tcp = struct.pack("!HHIIBBHHH", 40000, 8095, 0, 0, 5 << 4, 0x18, 65535, 0, 0)
    ev = parse_packet(ip + tcp + payload, at_ns=1, ports=frozenset({8095}))
    assert ev is not None and ev.path == "/?rest_route=/wp/v2/posts/{id}" and ev.method == "GET"


def test_self_call_finding_names_what_the_app_requests_from_itself() -> None:
    apache = proc(10, "apache2")
    conns = [named(Conn(40000, 8095, 99, 1.0, path="/page", dur_s=0.8), "curl")]
    for j in range(5):
        c = Conn(40001 + j, 8095, 10, 1.01 + 0.1 * j, path="/wp-cron.php", dur_s=0.05)
        c.http[0] = dataclasses.replace(c.http[0], method="POST")
        conns.append(c)
    samples = (sample(0.5, listener(8095, apache)),)
    report = summarize_watch(data(conns, samples, (EBPF, DESTROY, HTTP), {10: apache}))
    (finding,) = [f for f in check_watch(report) if f.code == "SELF_CALL"]
    assert finding.evidence.endswith("; it requests POST /wp-cron.php x5")

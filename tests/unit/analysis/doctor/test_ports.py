"""Port checks: ephemeral range and use, TIME_WAIT pressure, somaxconn and full accept queues."""

from __future__ import annotations

from dataclasses import replace

from loopscope.analysis.doctor.ports import (
    check_conntrack,
    check_ephemeral,
    check_somaxconn,
    check_time_wait,
)
from loopscope.analysis.doctor.verdict import Verdict
from loopscope.analysis.stack import summarize_stack
from loopscope.model import TcpState


def _summary(healthy, sockets=(), port_range=(32768, 60999), tw_reuse=2):  # type: ignore[no-untyped-def]
    stack = replace(healthy.snapshot.stack, ip_local_port_range=port_range, tcp_tw_reuse=tw_reuse)
    return summarize_stack(replace(healthy.snapshot, sockets=tuple(sockets), stack=stack))


def _clients(mk_conn, count, state=TcpState.ESTABLISHED, start=40000):  # type: ignore[no-untyped-def]
    return [mk_conn("127.0.0.1", start + i, "127.0.0.1", 5432, state) for i in range(count)]


def test_ephemeral_ok(healthy):
    ok = check_ephemeral(summarize_stack(healthy.snapshot))
    assert ok.verdict is Verdict.OK and "range 32768-60999 (28232 ports); 1 in use" in ok.evidence


def test_ephemeral_pressure_toward_one_destination(healthy, mk_conn):
    # a 1000-port range, 300 connections to 127.0.0.1:5432 -> 30% (warn), 600 -> 60% (fail)
    warn = check_ephemeral(_summary(healthy, _clients(mk_conn, 300), (40000, 40999)))
    assert warn.verdict is Verdict.WARN and "127.0.0.1:5432 holds 300 (30%)" in warn.evidence
    fail = check_ephemeral(_summary(healthy, _clients(mk_conn, 600), (40000, 40999)))
    assert fail.verdict is Verdict.FAIL and fail.code == "EPHEMERAL_PORT_PRESSURE"


def test_small_range_warns(healthy):
    small = check_ephemeral(_summary(healthy, (), (60000, 60999)))
    assert small.verdict is Verdict.WARN and small.code == "EPHEMERAL_RANGE_SMALL"


def test_time_wait(healthy, mk_conn):
    assert check_time_wait(summarize_stack(healthy.snapshot)).verdict is Verdict.OK
    tw = _clients(mk_conn, 600, TcpState.TIME_WAIT)
    fail = check_time_wait(_summary(healthy, tw, (40000, 40999), tw_reuse=0), tw)
    assert (
        fail.verdict is Verdict.FAIL
        and "127.0.0.1:5432 holds 600 ephemeral ports (60% of 1000)" in fail.evidence
    )
    reuse = check_time_wait(_summary(healthy, tw, (40000, 40999), tw_reuse=2), tw)
    # the same count spread over 10 destinations is no pressure
    spread = [
        mk_conn("127.0.0.1", 40000 + i, "127.0.0.1", 5000 + i % 10, TcpState.TIME_WAIT)
        for i in range(600)
    ]
    assert (
        check_time_wait(_summary(healthy, spread, (40000, 40999), tw_reuse=0), spread).verdict
        is Verdict.OK
    )
    # server-side TIME_WAIT (local port is the service port) holds no ephemeral port
    server = [
        mk_conn("127.0.0.1", 5432, "127.0.0.1", 40000 + i, TcpState.TIME_WAIT) for i in range(600)
    ]
    assert (
        check_time_wait(_summary(healthy, server, (40000, 40999), tw_reuse=0), server).verdict
        is Verdict.OK
    )
    assert reuse.verdict is Verdict.WARN and "tcp_tw_reuse=2 (loopback only)" in reuse.evidence
    assert "sysctl" in fail.remedy and "sysctl" not in reuse.remedy


def test_somaxconn_and_full_queue(healthy, mk_listener):
    socks = healthy.snapshot.sockets
    assert check_somaxconn(4096, socks).verdict is Verdict.OK
    small = check_somaxconn(128, socks)
    assert small.verdict is Verdict.WARN and small.code == "SOMAXCONN_SMALL"
    full = replace(mk_listener("127.0.0.1", 8000), accept_queue=129, backlog=128)
    busy = check_somaxconn(4096, [*socks, full])
    assert busy.verdict is Verdict.WARN and "127.0.0.1:8000 (129/128)" in busy.evidence
    assert check_somaxconn(None, socks).verdict is Verdict.SKIPPED


def test_conntrack():
    assert check_conntrack(0, 262144).verdict is Verdict.OK  # recorded on the dev VM
    assert check_conntrack(200_000, 262144).verdict is Verdict.WARN
    full = check_conntrack(262_000, 262144)
    assert (
        full.verdict is Verdict.FAIL and full.code == "CONNTRACK_FULL" and "(100%)" in full.evidence
    )
    assert check_conntrack(None, None).verdict is Verdict.SKIPPED

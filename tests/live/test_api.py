"""Live: the Python API against real sockets on loopback (a Python HTTP server and a client connection
held open), each entry point once."""

from __future__ import annotations

import os
import socket

import pytest
from servers import python_http_server

import loopscope

pytestmark = [pytest.mark.linux]


@pytest.fixture(scope="module")
def http():
    with python_http_server(bind="127.0.0.1") as srv:
        client = socket.create_connection(("127.0.0.1", srv.port))
        try:
            yield srv, client
        finally:
            client.close()


def test_snapshot_has_the_listener_and_both_ends_of_the_connection(http):
    srv, client = http
    snap = loopscope.snapshot()
    ports = {(s.local.port, s.remote.port) for s in snap.sockets}
    me = client.getsockname()[1]
    assert (srv.port, 0) in ports and (me, srv.port) in ports and (srv.port, me) in ports
    assert snap.taken_at_ns > 0 and snap.source in ("sock_diag", "procfs")
    mine = [s for s in snap.sockets if s.local.port == me]
    assert [snap.processes[k].pid for s in mine for k in s.owners] == [os.getpid()]


def test_listeners_name_scope_and_owner(http):
    srv, _ = http
    (row,) = [r for r in loopscope.listeners() if r.local.port == srv.port]
    assert row.scope.value == "loopback" and row.reach == "this host only"
    assert row.backlog is not None and row.accept_queue == 0
    assert row.owners and all(p.comm for p in row.owners)


def test_talk_map_has_this_process_calling_the_server(http):
    srv, _ = http
    tm = loopscope.talk_map()
    (edge,) = [e for e in tm.edges if e.port == srv.port]
    assert edge.connections == 1 and edge.client and edge.server


def test_doctor_rung_1_on_this_host():
    report = loopscope.doctor(rung=1, firewall=False)
    (ns,) = report.namespaces
    assert [r.rung for r in ns.rungs] == [1]
    checks = {c.id for c in ns.rungs[0].checks}
    assert {"lo.link", "resolve.localhost", "echo.tcp.127.0.0.1"} <= checks
    assert ns.rungs[0].verdict.value in ("ok", "warn", "fail")


def test_probe_speaks_http_to_the_server(http):
    srv, _ = http
    report = loopscope.probe(f"127.0.0.1:{srv.port}/", count=2)
    assert report.mode == "http"
    (result,) = report.results
    assert result.ok and len(result.attempts) == 2
    assert all(a.http is not None and a.http.status == 200 for a in result.attempts)
    refused = loopscope.probe("127.0.0.1:1", diagnose=False)
    assert not refused.results[0].ok

"""Live: without eBPF, destroy events alone count every connection from the server side, RST included."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

import pytest

from loopscope.analysis.watch.report import summarize_watch
from loopscope.watch.session import WatchOptions, WatchSession

pytestmark = [pytest.mark.linux]


def test_destroy_events_count_normal_and_reset_connections() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    total, resets = 30, 7
    with WatchSession(WatchOptions(ebpf=False)) as session:
        for k in range(total):
            c = socket.create_connection(("127.0.0.1", port))
            a, _ = srv.accept()
            c.sendall(b"hello")
            a.recv(5)
            if k < resets:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            a.close()
        time.sleep(0.3)
        session.poll()
        data = session.data()
    srv.close()
    report = summarize_watch(data)
    assert {s.name: s.active for s in report.sources}["ebpf_sockops"] is False
    (app,) = [a for a in report.apps if port in a.ports]
    insts = [i for i in report.instances if i.server.port == port]
    assert len(insts) == total and app.external_connections == total
    assert sum(1 for i in insts if i.client_rst) == resets
    assert all(i.source == "destroy" and i.client_pid is None for i in insts)
    assert any("without eBPF" in g.reason for g in report.gaps)


def _listener() -> tuple[socket.socket, Callable[[int], None]]:
    """A listener on 127.0.0.1 and a function making ``n`` connections to it (accepted, both ends closed)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]

    def burst(n: int) -> None:
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port))
            a, _ = srv.accept()
            c.close()
            a.close()

    return srv, burst


def test_recent_view_and_trim_keep_only_newer_events() -> None:
    srv, burst = _listener()
    port = srv.getsockname()[1]
    with WatchSession(WatchOptions(ebpf=False)) as session:
        burst(4)
        time.sleep(0.2)
        session.poll()
        mark = time.time_ns()
        burst(3)
        time.sleep(0.2)
        session.poll()

        def mine(d):
            return [e for e in d.closes if port in (e.local.port, e.remote.port)]

        assert len(mine(session.data())) == 14
        assert len(mine(session.data(since_ns=mark))) == 6
        session.trim(mark)
        assert len(mine(session.data())) == 6 and session.data().started_ns == mark
    srv.close()


def test_pause_stops_counting_and_resume_counts_again() -> None:
    srv, connections = _listener()
    port = srv.getsockname()[1]
    with WatchSession(WatchOptions(ebpf=False)) as session:
        connections(4)
        time.sleep(0.3)  # their destroy events reach the socket (pause drains what has arrived)
        session.pause()
        session.pause()  # idempotent
        assert session.paused
        connections(6)
        time.sleep(0.1)
        session.poll()  # nothing while paused
        session.resume()
        connections(3)
        time.sleep(0.3)
        session.poll()
        data = session.data()
    srv.close()
    report = summarize_watch(data)
    insts = [i for i in report.instances if i.server.port == port]
    assert len(insts) == 4 + 3
    (gap,) = [g for g in report.gaps if "paused" in g.reason]
    assert gap.count == 1 and "pauses" in gap.what

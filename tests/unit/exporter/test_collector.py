"""The exporter's read of the namespaces: connected sockets and TIME_WAIT counted without records
(the collector's ``Connected.COUNTS``, on real loopback sockets, both sources), the kernel filter's
bytes, the fd scan reused across scrapes, and the slower interval of the counts."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from loopscope.collect import Collector, Connected, OwnerScope, ProcfsSource, TimeWait
from loopscope.collect.sources import build_port_filter, parse_sockstat_time_wait
from loopscope.exporter.collector import (
    ExporterOptions,
    LoopscopeCollector,
    with_counts,
)
from loopscope.exporter.metrics import NamespaceView
from loopscope.model import Endpoint, TcpState

LO = ipaddress.IPv4Address("127.0.0.1")


def test_port_filter_bytes_golden() -> None:
    code = build_port_filter(32768, 60999)
    assert code[:4] == struct.pack("=HH", 32, 1)  # nlattr: length 32, INET_DIAG_REQ_BYTECODE
    ops = [struct.unpack_from("=BBH", code, off) for off in range(4, 32, 4)]
    assert ops == [
        (5, 8, 12),  # D_LE: remote port <= 0 (a listener) -> next op, else -> the range test
        (0, 0, 0),
        (1, 4, 20),  # JMP to the end: accept
        (2, 8, 20),  # S_GE 32768, else 4 past the end: reject
        (0, 0, 32768),
        (3, 8, 12),  # S_LE 60999, else reject
        (0, 0, 60999),
    ]


def test_sockstat_time_wait() -> None:
    text = "sockets: used 9\nTCP: inuse 5 orphan 0 tw 15 alloc 6 mem 1\nUDP: inuse 0 mem 0\n"
    assert parse_sockstat_time_wait(text) == 15
    assert parse_sockstat_time_wait("UDP: inuse 0 mem 0\n") is None
    assert parse_sockstat_time_wait("TCP: inuse 5 tw x\n") is None


class _Pairs:
    """A listener on 127.0.0.1:0 with ``n`` connected clients; ``closed`` of them closed by the
    client first (the client side goes to TIME_WAIT)."""

    def __init__(self, n: int, closed: int) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.servers: list[socket.socket] = []
        for _ in range(n):
            self.clients.append(socket.create_connection(("127.0.0.1", self.port)))
            self.servers.append(self.listener.accept()[0])
        for c, s in zip(self.clients[:closed], self.servers[:closed], strict=True):
            c.close()
            s.recv(1)  # the FIN
            s.close()
        self.open_ports = {c.getsockname()[1] for c in self.clients[closed:]}

    def close(self) -> None:
        for s in [*self.clients, *self.servers, self.listener]:
            s.close()


@pytest.fixture
def pairs() -> Iterator[_Pairs]:
    p = _Pairs(12, 4)
    yield p
    p.close()


@pytest.mark.linux
@pytest.mark.parametrize("procfs", [False, True], ids=["sock_diag", "procfs"])
def test_connected_counts_replace_rows(pairs: _Pairs, procfs: bool) -> None:
    options = {"source": ProcfsSource()} if procfs else {}
    collector = Collector(
        owner_scope=OwnerScope.NONE,
        time_wait=TimeWait.COUNTS,
        connected=Connected.COUNTS,
        **options,  # type: ignore[arg-type]
    )
    reading = collector.read()
    dest = Endpoint(LO, pairs.port)
    low, high = reading.snapshot.stack.ip_local_port_range or (32768, 60999)
    assert low <= pairs.port <= high  # so the server side is left out as a listener's port
    assert reading.connected_by_dest[dest] == 8  # the client side only
    assert pairs.open_ports <= reading.connected_ports
    assert pairs.port not in reading.connected_ports
    assert reading.time_wait_by_dest[dest] == 4
    states = {s.state for s in reading.snapshot.sockets}
    assert states <= {TcpState.LISTEN, TcpState.UNCONN}  # no record per connection
    assert any(s.local.port == pairs.port for s in reading.snapshot.sockets)
    if not procfs:  # the TIME_WAIT total from net/sockstat covers the ones not read
        assert reading.time_wait_other >= 0


# Run in a namespace of its own: on a shared host, other processes open listeners at any time (each
# makes a new scan, rightly), so the reuse is only deterministic where the listeners are ours.
_REUSE = r"""
import json, os, socket
from loopscope.exporter.collector import OwnerCache, make_snapshot_collector, read_namespaces
def owner_pids(views, port):
    return [k.pid for s in views[0].snapshot.sockets if s.is_listener and s.local.port == port
            for k in s.owners]
first = socket.socket(); first.bind(("127.0.0.1", 0)); first.listen()
collector, cache = make_snapshot_collector("auto"), OwnerCache(max_age_s=3600)
read_namespaces(collector, False, cache)
views = read_namespaces(collector, False, cache)
out = {"scans_after_two": cache.scans, "first": owner_pids(views, first.getsockname()[1])}
new = socket.socket(); new.bind(("127.0.0.1", 0)); new.listen()
views = read_namespaces(collector, False, cache)
out["scans_after_new"] = cache.scans
out["new"] = owner_pids(views, new.getsockname()[1])
read_namespaces(collector, False, cache)
out["scans_at_end"] = cache.scans
out["pid"] = os.getpid()
print(json.dumps(out))
"""


@pytest.mark.linux
@pytest.mark.root
@pytest.mark.netns
def test_owner_scan_is_reused_until_a_listener_appears() -> None:
    import json
    import subprocess
    import sys

    ns = f"ls-owners-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", _REUSE],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    out = json.loads(done.stdout)
    assert out["scans_after_two"] == 1  # the second read reused the first scan
    assert out["first"] == [out["pid"]]
    assert out["scans_after_new"] == 2  # a listener the last scan did not see: scanned again
    assert out["new"] == [out["pid"]]  # and its owner is named
    assert out["scans_at_end"] == 2


def test_with_counts_keeps_the_counted_values() -> None:
    from loopscope.testing.factories import make_snapshot

    snap = make_snapshot([])
    dest = Endpoint(LO, 8080)
    counted = NamespaceView(
        snapshot=snap,
        netns_cookie=1,
        time_wait_by_dest={dest: 2},
        time_wait_other=3,
        connected_by_dest={dest: 5},
        connected_ports=frozenset({40000}),
    )
    listening = NamespaceView(snapshot=snap, netns_cookie=1)
    merged = with_counts(listening, counted)
    assert merged.connected_by_dest == {dest: 5} and merged.time_wait_other == 3
    assert merged.connected_ports == frozenset({40000})
    assert with_counts(listening, None) is listening


@pytest.mark.linux
def test_counts_come_at_their_interval_listeners_every_scrape(pairs: _Pairs) -> None:
    col = LoopscopeCollector(ExporterOptions(counts_interval_s=3600, doctor_interval_s=0), None)

    def ephemeral() -> dict[str, float]:
        fams = {f.name: f for f in col.collect()}
        return {
            s.labels["destination"]: s.value
            for s in fams["loopscope_ephemeral_ports_in_use"].samples
        }

    dest = f"127.0.0.1:{pairs.port}"
    assert ephemeral()[dest] == 8 + 4  # established + TIME_WAIT client sides
    assert col.counts.passes == 1 and not col.counts.running  # no thread: counted inline
    pairs.clients[-1].close()
    assert ephemeral()[dest] == 12  # kept until the next count
    assert col.counts.passes == 1


@pytest.mark.linux
def test_a_started_collector_counts_in_its_thread_not_in_the_scrape(pairs: _Pairs) -> None:
    col = LoopscopeCollector(ExporterOptions(counts_interval_s=0.2, doctor_interval_s=0), None)
    col.start()
    try:
        assert col.counts.running and col.counts.passes == 1  # the first count is made by start()
        fams = {f.name: f for f in col.collect()}
        eph = {
            s.labels["destination"]: s.value
            for s in fams["loopscope_ephemeral_ports_in_use"].samples
        }
        assert eph[f"127.0.0.1:{pairs.port}"] == 12
        assert fams["loopscope_exporter_counts_age_seconds"].samples[0].value < 5
        assert fams["loopscope_exporter_counting_duration_seconds"].samples[0].value > 0
        pairs.clients[-1].close()  # established -> TIME_WAIT: still 12 client sides
        pairs.clients[-2].close()
        deadline = time.monotonic() + 10
        while col.counts.passes < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert col.counts.passes >= 3  # the thread went on counting
    finally:
        col.stop()
    assert not col.counts.running

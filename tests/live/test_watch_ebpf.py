"""Live: the pure-Python sockops program sees every connect of a child process, with its pid."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from loopscope.backends.linux.bpf.sockops import (
    EVENT,
    SockopsCollector,
    count_attached_sockops,
    netns_cookie_of_current,
)
from loopscope.errors import BackendUnavailable
from loopscope.model.events import ConnectKind

pytestmark = [pytest.mark.linux, pytest.mark.root]

_CHILD = """
import socket, sys
port, n, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
for _ in range(n):
    s = socket.socket(fam)
    s.connect((host, port))
    print(s.getsockname()[1], flush=True)
    s.close()
"""


@pytest.mark.parametrize("transport", ["ringbuf", "queue"])
@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)]
)
def test_every_connect_of_a_child_is_seen_with_its_pid(
    host: str, family: int, transport: str
) -> None:
    n = 50
    srv = socket.socket(family)
    srv.bind((host, 0))
    srv.listen(256)
    port = srv.getsockname()[1]
    with SockopsCollector(transport=transport) as collector:
        assert collector.transport == transport
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(port), str(n), host],
            stdout=subprocess.PIPE,
            text=True,
        )
        accepted = []
        for _ in range(n):
            conn, _ = srv.accept()
            accepted.append(conn)
        out, _ = child.communicate(timeout=30)
        for conn in accepted:
            conn.close()
        time.sleep(0.05)
        events = collector.drain()
        assert collector.drops() == 0
    srv.close()
    client_ports = [int(x) for x in out.split()]
    assert len(client_ports) == n
    connects = [e for e in events if e.kind is ConnectKind.ACTIVE and e.remote.port == port]
    passive = [e for e in events if e.kind is ConnectKind.PASSIVE and e.local.port == port]
    assert sorted(e.local.port for e in connects) == sorted(client_ports)
    assert {e.pid for e in connects} == {child.pid}
    assert all(str(e.remote.address) == host for e in connects)
    assert sorted(e.remote.port for e in passive) == sorted(client_ports)
    assert len({e.cookie for e in connects + passive}) == 2 * n
    assert {e.netns_cookie for e in connects + passive} == {netns_cookie_of_current()}


def test_close_detaches_the_program() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    collector = SockopsCollector()
    collector.close()
    with SockopsCollector() as probe:
        # a fresh collector sees a connect; the closed one has no fds left to read
        s = socket.create_connection(("127.0.0.1", port))
        s.close()
        time.sleep(0.02)
        assert any(e.remote.port == port for e in probe.drain())
    with pytest.raises(BackendUnavailable):
        collector.drain()
    srv.close()


def test_namespace_filter_in_the_kernel() -> None:
    import os
    import subprocess

    from loopscope.backends.linux.netns import resolve_netns, run_in_netns

    name = f"lsw-ebpf-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        other = run_in_netns(resolve_netns(name), netns_cookie_of_current)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        with (
            SockopsCollector(only_netns_cookie=other) as elsewhere,
            SockopsCollector(only_netns_cookie=netns_cookie_of_current()) as here,
        ):
            for _ in range(3):
                socket.create_connection(("127.0.0.1", port)).close()
            time.sleep(0.05)
            assert elsewhere.has_netns_cookie
            assert not [e for e in elsewhere.drain() if port in (e.remote.port, e.local.port)]
            assert len([e for e in here.drain() if e.remote.port == port]) == 3
        srv.close()
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_attached_to_the_cgroup_root_while_open_and_detached_after() -> None:
    with SockopsCollector() as collector:
        root = collector.cgroup_path
        during = count_attached_sockops(root)
    after = count_attached_sockops(root)
    assert during == after + 1


def test_kernel_run_stats_count_every_program_run() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    with SockopsCollector(only_netns_cookie=netns_cookie_of_current()) as collector:
        collector.enable_run_stats()
        runs0, ns0 = collector.run_stats()
        for _ in range(10):
            c = socket.create_connection(("127.0.0.1", port))
            a, _ = srv.accept()
            c.close()
            a.close()
        runs1, ns1 = collector.run_stats()
    srv.close()
    assert (
        runs1 - runs0 >= 20
    )  # at least connect + passive per connection (other callbacks run too)
    assert 0 < (ns1 - ns0) / (runs1 - runs0) < 100_000  # ns per run


def _connect_n(port: int, n: int) -> None:
    for _ in range(n):
        socket.create_connection(("127.0.0.1", port)).close()


def test_a_full_ring_drops_and_counts_and_the_rest_is_read() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    port = srv.getsockname()[1]
    # 4 KiB holds 36 records of 112 bytes (104 + an 8-byte header); 100 connects write 100 active
    # + up to 100 passive records
    with SockopsCollector(
        ring_bytes=4096, only_netns_cookie=netns_cookie_of_current()
    ) as collector:
        assert collector.transport == "ringbuf"
        _connect_n(port, 100)
        time.sleep(0.05)
        first = collector.drain()
        assert len(first) == 4096 // (EVENT.size + 8) and collector.drops() == 200 - len(first)
        _connect_n(port, 5)  # space again after the drain
        time.sleep(0.05)
        assert len([e for e in collector.drain() if e.kind is ConnectKind.ACTIVE]) == 5
    srv.close()


def test_detach_stops_recording_and_attach_resumes() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    with SockopsCollector(only_netns_cookie=netns_cookie_of_current()) as collector:
        root = collector.cgroup_path
        attached = count_attached_sockops(root)
        collector.detach()
        assert not collector.attached and count_attached_sockops(root) == attached - 1
        _connect_n(port, 3)
        time.sleep(0.02)
        assert [e for e in collector.drain() if e.remote.port == port] == []
        collector.attach()
        collector.attach()  # idempotent
        assert collector.attached and count_attached_sockops(root) == attached
        _connect_n(port, 3)
        time.sleep(0.02)
        assert len([e for e in collector.drain() if e.remote.port == port]) == 3
    srv.close()


def test_connect_record_names_the_caller_even_after_it_exited(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """bpf_get_current_comm is accepted for SOCK_OPS: the connect record carries the caller's comm,
    read after the process is gone (its /proc entry with it)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    exe = tmp_path / "shortcl"
    exe.symlink_to(sys.executable)
    with SockopsCollector(only_netns_cookie=netns_cookie_of_current()) as collector:
        assert collector.has_comm
        child = subprocess.run(
            [str(exe), "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}))"],
            check=True,
        )
        assert child.returncode == 0
        time.sleep(0.05)
        events = [e for e in collector.drain() if port in (e.remote.port, e.local.port)]
    srv.close()
    active = [e for e in events if e.kind is ConnectKind.ACTIVE]
    passive = [e for e in events if e.kind is ConnectKind.PASSIVE]
    assert [e.comm for e in active] == ["shortcl"] and [e.comm for e in passive] == [None]

"""Real echo servers in a child process, every path measured by the same loop, pinning applied."""

import os
import shutil
import socket

import pytest

from loopscope.analysis.bench.results import BenchConfig, Engine, PinMode
from loopscope.bench.native import compiler_command
from loopscope.bench.paths import PATHS, find_host_address, open_round_trip
from loopscope.bench.runner import measure_round_trips, run_bench
from loopscope.bench.server import SMALL_MESSAGE_BYTES, BenchError, ServerProcess

pytestmark = pytest.mark.linux
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
HAVE_CC = shutil.which(compiler_command()[0]) is not None


def test_every_path_measures_count_round_trips_and_skips_with_reasons():
    cfg = BenchConfig(
        paths=PATHS, sizes_bytes=(1, 70_000), count=30, warmup=3, duration_s=2.0, throughput_s=0.1
    )
    report = run_bench(cfg)
    by = {(c.path, c.size_bytes): c for c in report.cells}
    assert len(by) == len(PATHS) * 2
    host = find_host_address()
    for (path, size), cell in by.items():
        if path == "udp4" and size == 70_000:
            assert cell.summary is None and "65507" in cell.skipped_reason
        elif path == "tcp-host" and host is None:
            assert cell.skipped_reason == "no non-loopback address on this host"
        else:
            assert cell.skipped_reason is None, cell
            assert cell.summary.count == 30 and not cell.truncated
            assert cell.summary.min_ns <= cell.summary.p50_ns <= cell.summary.p999_ns
    # a socket round trip costs far more than an in-process call
    assert by[("tcp4", 1)].ratio_to_call > 10
    assert by[("call", 1)].ratio_to_call == 1.0
    assert by[("http-newconn", 1)].summary.p50_ns > by[("tcp4", 1)].summary.p50_ns
    thr = {t.path: t for t in report.throughput}
    assert {"socketpair", "unix", "tcp4", "tcp6"} <= set(thr)
    assert all(t.total_bytes > 0 and t.bytes_per_s > 1e6 for t in thr.values())
    assert report.findings == ()


def test_python_engine_measures_the_same_paths():
    cfg = BenchConfig(
        paths=("call", "socketpair", "tcp4", "udp4", "http-keepalive"),
        sizes_bytes=(1, 70_000),
        count=20,
        warmup=2,
        throughput=False,
        engine=Engine.PYTHON,
    )
    report = run_bench(cfg)
    assert report.engine is report.server_engine is Engine.PYTHON
    assert report.native_timer_overhead_ns is None
    ran = [c for c in report.cells if c.summary is not None]
    assert len(ran) == 9 and all(c.engine is Engine.PYTHON and c.summary.count == 20 for c in ran)


@pytest.mark.skipif(not HAVE_CC, reason="needs a C compiler")
def test_native_engine_runs_every_path_but_http():
    report = run_bench(
        BenchConfig(
            paths=PATHS,
            sizes_bytes=(64,),
            count=20,
            warmup=2,
            throughput=False,
            engine=Engine.NATIVE,
        )
    )
    assert report.engine is report.server_engine is Engine.NATIVE
    python_call = [c for c in report.cells if c.label == "in-process (python)"]
    assert [c.engine for c in python_call] == [Engine.PYTHON]  # what the HTTP paths compare with
    for c in report.cells:
        if c.skipped_reason is None and c not in python_call:
            want = Engine.PYTHON if c.path.startswith("http") else Engine.NATIVE
            assert c.engine is want and c.summary.count == 20, c
    assert 0 < report.native_timer_overhead_ns < 10_000


@pytest.mark.parametrize("engine", [Engine.PYTHON, Engine.AUTO])
def test_duration_cap_truncates(engine):
    with ServerProcess(["tcp4"], engine=engine) as srv:
        rt, close = open_round_trip("tcp4", 1, srv, engine=engine)
        try:
            lat, truncated = measure_round_trips(rt, count=10**9, warmup=0, duration_s=0.05)
        finally:
            close()
    assert truncated and 10 < len(lat) < 10**9


@pytest.mark.parametrize("engine", [Engine.PYTHON, Engine.AUTO])
@pytest.mark.parametrize("size", [SMALL_MESSAGE_BYTES, SMALL_MESSAGE_BYTES + 1, 1 << 20])
def test_large_payloads_are_echoed_in_full(size, engine):
    # 64 KiB: the os.read/os.write path, several reads per message; above: recv_into/sendall
    # (Python engine); the native engine reads and writes every size in C
    with ServerProcess(["unix", "socketpair", "tcp4", "http"], engine=engine) as srv:
        for path in ("unix", "socketpair", "tcp4", "http-keepalive"):
            rt, close = open_round_trip(path, size, srv, engine=engine)
            try:
                lat, _ = measure_round_trips(rt, count=3, warmup=0, duration_s=5.0)
            finally:
                close()
            assert len(lat) == 3


@pytest.mark.parametrize("engine", [Engine.PYTHON, Engine.AUTO])
def test_peer_close_is_a_bench_error(engine):
    with ServerProcess(["tcp4"], engine=engine) as srv:
        rt, close = open_round_trip("tcp4", 1, srv, engine=engine)
        rt()
    # the server process is gone: its sockets closed, so the next round trip must fail loudly
    with pytest.raises((BenchError, OSError)):
        rt()
    close()


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs")
def test_server_process_is_pinned_and_stopped():
    cpu = sorted(os.sched_getaffinity(0))[1]
    with ServerProcess(["tcp4"], cpu=cpu) as srv:
        pid = srv.pid
        assert os.sched_getaffinity(pid) == {cpu}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs")
def test_run_bench_pins_and_restores_client_affinity():
    before = os.sched_getaffinity(0)
    report = run_bench(
        BenchConfig(
            paths=("tcp4",),
            sizes_bytes=(1,),
            count=20,
            warmup=0,
            pin=PinMode.DIFFERENT,
            throughput=False,
        )
    )
    assert report.client_cpu != report.server_cpu
    assert os.sched_getaffinity(0) == before


def test_server_bind_failure_leaves_that_kind_out_with_its_reason():
    # 192.0.2.0/24 is TEST-NET-1; .254 is not one of this host's addresses. One kind that cannot
    # be served (an address family missing in a hostile namespace) must not stop the others.
    host = "192.0.2.254"
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
            pytest.skip("this host owns 192.0.2.254")
        except OSError:
            pass
    with ServerProcess(["tcp-host", "tcp4"], host_address=host) as server:
        assert "tcp-host" not in server.addresses
        assert server.errors == {
            "tcp-host": "cannot serve tcp-host here: Cannot assign requested address"
        }
        assert server.addresses["tcp4"][0] == "127.0.0.1"


def test_unknown_kind_is_a_bench_error():
    with pytest.raises(BenchError, match="failed to start"):
        with ServerProcess(["carrier-pigeon"]):
            pass


def test_strangers_on_the_echo_port_are_dropped_and_the_server_keeps_serving():
    # another program probing loopback ports (an HTTP probe, a scanner) must not crash the server
    with ServerProcess(["tcp4"]) as srv:
        host, port = srv.addresses["tcp4"]
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x01" + b"\xff" * 8, b"\x02\x00"):
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                try:
                    answer = s.recv(100)
                except ConnectionResetError:  # closed with our junk unread: RST
                    answer = b""
                assert answer == b""  # closed without an answer
        rt, close = open_round_trip("tcp4", 1, srv)
        try:
            lat, _ = measure_round_trips(rt, count=5, warmup=0, duration_s=2.0)
        finally:
            close()
        assert len(lat) == 5

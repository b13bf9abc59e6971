"""The Nagle + delayed-ACK stall for real: stdlib http.server writing headers and body in two sends.

A keep-alive http.client client on 127.0.0.1. Without TCP_NODELAY on the server each request waits
for the client's delayed ACK (~40 ms) and find_nagle_stall flags it; with TCP_NODELAY, or with the
response written in one send, requests take well under a millisecond and nothing is flagged.
"""

import http.client
import time

import pytest

from loopscope.analysis.bench.nagle import NAGLE_CODE, find_nagle_stall
from loopscope.bench.server import ServerProcess

pytestmark = pytest.mark.linux


def _keepalive_latencies(nodelay: bool, single_send: bool, n: int) -> list[int]:
    with ServerProcess(["http"], http_nodelay=nodelay, http_single_send=single_send) as srv:
        host, port = srv.addresses["http"]
        conn = http.client.HTTPConnection(host, port, timeout=5)
        out = []
        try:
            for _ in range(n):
                t0 = time.perf_counter_ns()
                conn.request("GET", "/")
                body = conn.getresponse().read()
                out.append(time.perf_counter_ns() - t0)
                assert body == b"ok\n"
        finally:
            conn.close()
    return out


def test_split_sends_without_nodelay_stall_about_40ms_and_are_flagged():
    lat = _keepalive_latencies(nodelay=False, single_send=False, n=16)
    stalled = [v for v in lat if 36e6 <= v <= 60e6]
    assert len(stalled) >= 10, [round(v / 1e6, 2) for v in lat]
    finding = find_nagle_stall(lat, split_sends=True, subject="GET /")
    assert finding is not None and finding.code == NAGLE_CODE
    assert finding.severity.value == "medium"


def test_nodelay_removes_the_stall():
    lat = _keepalive_latencies(nodelay=True, single_send=False, n=40)
    assert sorted(lat)[len(lat) // 2] < 10e6
    assert find_nagle_stall(lat, split_sends=True) is None


def test_single_send_without_nodelay_has_no_stall():
    lat = _keepalive_latencies(nodelay=False, single_send=True, n=40)
    assert sorted(lat)[len(lat) // 2] < 10e6
    assert find_nagle_stall(lat, split_sends=False) is None

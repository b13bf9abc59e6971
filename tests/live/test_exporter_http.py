"""Live: ``loopscope exporter --http`` counts HTTP requests per edge exactly: a server started after the
exporter (its port joins the capture at the next scrape), a client with a hostile name over one
kept-alive connection (escaped, parses back, responses by status class), and a client that connected
before the exporter started (``unknown``, counted as unresolved)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.live.test_exporter_cli import exporter, scrape
from tests.live.test_exporter_survives import samples

pytestmark = [pytest.mark.linux, pytest.mark.root]

# A named HTTP/1.1 server on 127.0.0.1:<ephemeral>: 200 for every path but /missing (404).
SERVER = r"""
import ctypes, http.server, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""

# A named client: connects, says so, waits for a line on stdin, then GETs each path on that one
# kept-alive connection.
CLIENT = r"""
import ctypes, http.client, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[2]), timeout=10)
conn.connect()
print("connected", flush=True)
sys.stdin.readline()
for path in sys.argv[3:]:
    conn.request("GET", path); r = conn.getresponse(); r.read()
print("done", flush=True)
"""


@contextmanager
def http_server(name: str) -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)


@contextmanager
def client(name: str, port: int, paths: list[str]) -> Iterator[subprocess.Popen[str]]:
    """Connected when yielded; ``go(proc)`` sends the requests."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, name, str(port), *paths],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def http_counts(text: str, family: str, port: int, by: str) -> dict[tuple[str, ...], float]:
    return {
        (labels["client_app"], labels["server_app"], labels[by], labels["self_call"]): value
        for labels, value in samples(text, family)
        if labels["port"] == str(port)
    }


def _wait_counted(eport: int, port: int, total: float) -> str:
    deadline = time.monotonic() + 20
    while True:
        text = scrape(eport)
        got = http_counts(text, "loopscope_http_responses_total", port, "code_class")
        if sum(got.values()) >= total or time.monotonic() > deadline:
            return text
        time.sleep(0.3)


def test_a_server_started_later_and_a_hostile_client_are_counted_exactly() -> None:
    hostile = 'ev"l\n{x}\\q\t'
    paths = ["/"] * 5 + ["/missing"] * 2
    with exporter("--http") as (_proc, eport):
        with http_server("ls-http-srv") as port:
            deadline = time.monotonic() + 20
            while f'port="{port}"' not in scrape(eport):  # a scrape saw the new listener
                assert time.monotonic() < deadline
                time.sleep(0.2)
            time.sleep(1.5)  # the drain thread swaps the filter at its next pass (0.5 s)
            with client(hostile, port, paths) as proc:
                go(proc)
            text = _wait_counted(eport, port, len(paths))
    assert "\n{x}" not in text
    reqs = http_counts(text, "loopscope_http_requests_total", port, "method")
    assert reqs == {(hostile, "ls-http-srv", "GET", "false"): 7.0}
    resps = http_counts(text, "loopscope_http_responses_total", port, "code_class")
    assert resps == {
        (hostile, "ls-http-srv", "2xx", "false"): 5.0,
        (hostile, "ls-http-srv", "4xx", "false"): 2.0,
    }


def test_a_client_connected_before_the_exporter_is_unknown_and_counted() -> None:
    with http_server("ls-http-srv2") as port, client("ls-early", port, ["/"] * 4) as proc:
        with exporter("--http") as (_proc, eport):
            before = samples(scrape(eport), "loopscope_exporter_http_clients_unresolved_total")
            go(proc)
            text = _wait_counted(eport, port, 4)
    reqs = http_counts(text, "loopscope_http_requests_total", port, "method")
    assert reqs == {("unknown", "ls-http-srv2", "GET", "false"): 4.0}
    after = samples(text, "loopscope_exporter_http_clients_unresolved_total")
    assert after[0][1] - before[0][1] == 8  # 4 requests + 4 responses


# A named client that binds a given local port (SO_REUSEADDR), makes one request with
# ``Connection: close`` (the server closes first: its end keeps the TIME_WAIT, the client port is
# free again at once) and exits.
ONE_SHOT = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
c.bind(("127.0.0.1", int(sys.argv[3])))
c.connect(("127.0.0.1", int(sys.argv[2])))
c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
while c.recv(4096):
    pass
c.close()
"""


def test_a_reused_client_port_is_never_credited_to_the_later_client() -> None:
    """Two processes use the same 4-tuple one after the other (as the ephemeral port sequence does
    within seconds on a busy host), and the capture is drained only after both: the first request
    is ``unknown`` (its map entry now belongs to the later connection), never the later client's."""
    import ipaddress
    import socket

    from loopscope.backends.linux.bpf.counter import ConnectionCounter
    from loopscope.backends.linux.bpf.sockops import netns_cookie_of_current
    from loopscope.exporter.http import HttpCounts

    lo = ipaddress.IPv4Address("127.0.0.1")
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    shared = free.getsockname()[1]
    free.close()
    cookie = netns_cookie_of_current()
    assert cookie is not None
    with ConnectionCounter(client_entries=1024) as counter, http_server("ls-reuse-srv") as port:
        http = HttpCounts(counter, cookie, drain_interval_s=3600)  # drained by hand below
        http.set_ports([port])
        http.start()
        try:
            for name in ("ls-reuse-one", "ls-reuse-two"):
                subprocess.run(
                    [sys.executable, "-c", ONE_SHOT, name, str(port), str(shared)],
                    check=True,
                    timeout=30,
                )
            time.sleep(0.2)  # the last segments reach the capture socket
            http.drain()
            take = http.take()
        finally:
            http.stop()
    assert take.requests == {(None, lo, port, "GET"): 1, ("ls-reuse-two", lo, port, "GET"): 1}
    assert take.responses == {(None, lo, port, "2xx"): 1, ("ls-reuse-two", lo, port, "2xx"): 1}
    assert take.unresolved == 2

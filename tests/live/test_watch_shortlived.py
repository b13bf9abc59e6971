"""Live proof of client naming and grouping: a real self-calling HTTP server (a WordPress-like app that
POSTs to its own ``/wp-cron.php`` and routes REST calls by ``/?rest_route=...``) and 50 short-lived client
processes that exit right after their request. They must show as ONE call-graph row
``client (50 processes) -> server:port`` with the 50 pids kept, and the self-calls per path must keep
the routing query apart.

Needs root (eBPF sockops, AF_PACKET).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from procs import stop_process

from loopscope.analysis.watch.report import WatchReport, summarize_watch
from loopscope.watch.session import WatchOptions, WatchSession

pytestmark = [pytest.mark.linux, pytest.mark.root]

SERVER = """
import http.client, http.server, os, socketserver, sys
PORT_FILE = sys.argv[1]

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _self(self, method, path):
        c = http.client.HTTPConnection("127.0.0.1", self.server.server_address[1], timeout=10)
        c.request(method, path, body=b"" if method == "POST" else None, headers={"Connection": "close"})
        c.getresponse().read()
        c.close()

    def _reply(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        if self.path == "/page":
            self._self("POST", "/wp-cron.php?doing_wp_cron=1")
            self._self("GET", "/?rest_route=/a")
            self._self("GET", "/?rest_route=/b&_locale=user")
            self._self("GET", "/?rest_route=/b")
        self._reply()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply()

    def log_message(self, *args):
        pass

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

srv = S(("127.0.0.1", 0), H)
with open(PORT_FILE + ".tmp", "w") as fh:
    fh.write(str(srv.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
srv.serve_forever()
"""

CLIENT = (
    "import http.client,sys;c=http.client.HTTPConnection('127.0.0.1',int(sys.argv[1]),timeout=10);"
    "c.request('GET','/page',headers={'Connection':'close'});r=c.getresponse();r.read();"
    "assert r.status==200"
)


@contextmanager
def named_python(name: str) -> Iterator[str]:
    """A symlink to this Python named ``name``: processes exec'd through it have that comm."""
    d = tempfile.mkdtemp(prefix="ls-shortlived-")
    path = os.path.join(d, name)
    os.symlink(sys.executable, path)
    try:
        yield path
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def selfcall_server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The self-calling server as a process named ``wpapp``; yields its port and process."""
    with named_python("wpapp") as exe:
        port_file = os.path.join(os.path.dirname(exe), "port")
        proc = subprocess.Popen([exe, "-c", SERVER, port_file])
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(port_file):
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
            with open(port_file) as fh:
                port = int(fh.read())
            yield port, proc
        finally:
            stop_process(proc)


def watch_clients(port: int, clients: int) -> tuple[WatchReport, list[int]]:
    """Watch (eBPF, HTTP capture on ``port``) while ``clients`` processes named ``shortcl`` each make one
    request to ``/page`` and exit; returns the report and the client pids."""
    pids: list[int] = []
    with (
        named_python("shortcl") as exe,
        WatchSession(WatchOptions(http=True, http_ports=(port,), snapshot_interval_s=0.5)) as s,
    ):
        for _ in range(clients):
            proc = subprocess.Popen([exe, "-c", CLIENT, str(port)])
            pids.append(proc.pid)
            assert proc.wait(20) == 0
            s.poll()
        time.sleep(0.6)
        s.poll()
        data = s.data()
    return summarize_watch(data), pids


def test_fifty_short_lived_clients_are_one_named_row_and_self_paths_keep_the_route() -> None:
    with selfcall_server() as (port, server):
        report, pids = watch_clients(port, 50)
    ebpf = next(src for src in report.sources if src.name == "ebpf_sockops")
    if not ebpf.active:
        pytest.skip(f"eBPF sockops unavailable: {ebpf.reason}")
    rows = [e for e in report.edges if e.port == port and not e.self_call]
    assert [e.client for e in rows] == ["shortcl (50 processes)"], [e.client for e in rows]
    assert rows[0].connections == 50
    assert set(rows[0].client_pids) == set(pids)
    self_rows = [e for e in report.edges if e.port == port and e.self_call]
    assert len(self_rows) == 1
    assert self_rows[0].client == self_rows[0].server == f"wpapp[{server.pid}]"
    assert self_rows[0].connections == 200
    app = next(a for a in report.apps if port in a.ports)
    assert app.self_paths == {
        "POST /wp-cron.php": 50,
        "GET /?rest_route=/a": 50,
        "GET /?rest_route=/b": 100,
    }
    assert app.external_paths == {"/page": 50}


HOLD = (
    "import socket,sys;s=socket.create_connection(('127.0.0.1',int(sys.argv[1])));"
    "print('ok',flush=True);sys.stdin.read()"
)


def test_map_and_dot_group_clients_by_name() -> None:
    """``map`` (the talk map) and ``map --dot``: three client processes of one name holding a connection
    are one client app ``holder (3 processes)``, one DOT node, pids kept."""
    from loopscope.api import talk_map
    from loopscope.render.dot import format_dot

    with selfcall_server() as (port, server), named_python("holder") as exe:
        holders = [
            subprocess.Popen(
                [exe, "-c", HOLD, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            for _ in range(3)
        ]
        try:
            for h in holders:
                assert h.stdout is not None and h.stdout.readline() == b"ok\n"
            edges = [e for e in talk_map().edges if e.port == port]
        finally:
            for h in holders:
                stop_process(h)
    assert [(e.client, e.server, e.connections) for e in edges] == [
        ("holder (3 processes)", f"wpapp[{server.pid}]", 3)
    ]
    assert set(edges[0].client_pids) == {h.pid for h in holders}
    dot = format_dot(edges)
    assert dot.count('[label="holder (3 processes)"]') == 1 and "n0 -> n1" in dot

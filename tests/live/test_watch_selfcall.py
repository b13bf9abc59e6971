"""Live proof on real software: gunicorn (gthread) app that calls itself N times per request, an nginx ->
backend chain, and a load generator with a known request count. Ground truth is known by construction.

Needs root (eBPF sockops, AF_PACKET), gunicorn (pip: loopscope[lab]) and nginx (Debian: nginx).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from procs import stop_process

from loopscope.analysis.watch.findings import check_watch
from loopscope.analysis.watch.report import WatchReport, summarize_watch
from loopscope.watch.session import WatchOptions, WatchSession

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.services]

APP = """
import http.client, os, threading, time, urllib.parse
PORT = int(os.environ["LAB_PORT"])
_local = threading.local()

def call(host, path, pool):
    if pool:
        conn = getattr(_local, host, None)
        if conn is None:
            conn = http.client.HTTPConnection(host, PORT, timeout=10)
            setattr(_local, host, conn)
        conn.request("GET", path)
    else:
        conn = http.client.HTTPConnection(host, PORT, timeout=10)
        conn.request("GET", path, headers={"Connection": "close"})
    resp = conn.getresponse()
    resp.read()
    if not pool:
        conn.close()

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(0.05)
    if path == "/work":
        q = urllib.parse.parse_qs(environ["QUERY_STRING"])
        pool = q["mode"][0] == "pool"
        for _ in range(int(q["n"][0])):
            call(q["host"][0], "/internal/leaf", pool)
    body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

LOADGEN = """
import http.client, sys, time
host, port, path, count, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
start = time.monotonic()
for i in range(count):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", path, headers={"Connection": "close"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
    conn.close()
print("done", flush=True)
"""


def _host_address() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.IPv4Address(a.address).is_loopback:
                return str(a.address)
    return None


def _wait(port: int, host: str = "127.0.0.1", timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} not listening")


@contextmanager
def gunicorn_app(
    workers: int = 2, threads: int = 8
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The self-calling app under gunicorn gthread on 0.0.0.0:<ephemeral> (listener passed as an fd)."""
    if shutil.which("gunicorn") is None:
        pytest.skip("gunicorn not installed: pip install 'loopscope[lab]'")
    d = tempfile.mkdtemp(prefix="ls-watch-app-")
    with open(os.path.join(d, "labapp.py"), "w") as fh:
        fh.write(APP)
    lst = socket.socket()
    lst.bind(("0.0.0.0", 0))
    lst.listen(256)
    port = lst.getsockname()[1]
    fd = lst.fileno()
    os.set_inheritable(fd, True)
    env = {**os.environ, "LAB_PORT": str(port), "PYTHONPATH": d}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gthread",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "--keep-alive",
            "60",
            "--bind",
            f"fd://{fd}",
            "--chdir",
            d,
            "labapp:app",
        ],
        pass_fds=(fd,),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(d, "log"), "wb"),
    )
    lst.close()
    try:
        _wait(port)
        deadline = time.monotonic() + 20  # every worker up
        while len(psutil.Process(proc.pid).children()) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        yield port, proc
    finally:
        stop_process(proc)
        shutil.rmtree(d, ignore_errors=True)


def _watch_while(argv: list[str], *, http: bool, ports: tuple[int, ...]) -> tuple[WatchReport, int]:
    """Watch while the load generator runs; returns the report and the load generator's pid.

    HTTP capture is limited to the test's ports (as ``watch --http --port``): other HTTP traffic on a
    busy host would otherwise compete for the capture buffer.
    """
    with WatchSession(
        WatchOptions(http=http, http_ports=ports, snapshot_interval_s=0.5)
    ) as session:
        gen = subprocess.Popen(
            [sys.executable, "-c", LOADGEN, *argv], stdout=subprocess.PIPE, text=True
        )
        while gen.poll() is None:
            time.sleep(0.1)
            session.poll()
        assert gen.returncode == 0
        time.sleep(0.6)
        session.poll()
        data = session.data()
    return summarize_watch(data), gen.pid


def _app(report: WatchReport, port: int):  # type: ignore[no-untyped-def]
    found = [a for a in report.apps if port in a.ports]
    assert len(found) == 1, [a.name for a in report.apps]
    return found[0]


@pytest.mark.parametrize("target", ["127.0.0.1", "host"])
def test_new_connection_per_call_exact_counts_and_client_pids(target: str) -> None:
    host = "127.0.0.1" if target == "127.0.0.1" else _host_address()
    if host is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    external, n, rate = 60, 3, 75.0  # 75 requests/s x (1 + 3) connections = 300 new connections/s
    with gunicorn_app() as (port, proc):
        workers = {c.pid for c in psutil.Process(proc.pid).children()}
        report, gen_pid = _watch_while(
            ["127.0.0.1", str(port), f"/work?n={n}&host={host}&mode=new", str(external), str(rate)],
            http=True,
            ports=(port,),
        )
    app = _app(report, port)
    assert app.external_connections == external
    assert app.external_requests == external
    assert app.self_connections == external * n
    assert app.self_requests == external * n
    assert app.self_factor == n
    assert app.per_path_factor == {"/work": float(n)}
    self_edges = [e for e in report.edges if e.self_call and e.port == port]
    assert len(self_edges) == 1 and self_edges[0].connections == external * n
    assert set(self_edges[0].client_pids) <= workers and self_edges[0].client_pids
    gen_edges = [e for e in report.edges if e.port == port and gen_pid in e.client_pids]
    assert (
        len(gen_edges) == 1 and gen_edges[0].connections == external and not gen_edges[0].self_call
    )
    insts = [i for i in report.instances if i.server.port == port]
    assert all(i.client_pid is not None for i in insts)
    if target == "host":
        assert {str(i.server.address) for i in insts if i.client_pid in workers} == {host}
    codes = {f.code for f in check_watch(report) if f.subject == app.name}
    assert not [s for s in report.sources if s.dropped]
    assert {"SELF_CALL", "SELF_CALL_ON_HOT_PATH"} <= codes


def test_keep_alive_pool_counts_requests_not_connections() -> None:
    host = _host_address() or "127.0.0.1"
    external, n = 40, 4
    with gunicorn_app(workers=1, threads=4) as (port, _proc):
        report, _ = _watch_while(
            ["127.0.0.1", str(port), f"/work?n={n}&host={host}&mode=pool", str(external), "40"],
            http=True,
            ports=(port,),
        )
    app = _app(report, port)
    assert app.external_requests == external
    assert app.self_requests == external * n
    assert app.self_factor == n
    assert 1 <= app.self_connections <= 4  # one pooled connection per worker thread used
    assert app.self_connections < app.self_requests


NGINX_CONF = """daemon off; worker_processes 2; pid {d}/nginx.pid; error_log {d}/error.log warn; user root;
events {{ worker_connections 256; }}
http {{ access_log off; {temps}
  server {{ listen 127.0.0.1:{front};
    location / {{ proxy_pass http://127.0.0.1:{back}; }} }} }}
"""


@contextmanager
def nginx_proxy(back: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    exe = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if exe is None:
        pytest.skip("nginx not installed: apt-get install nginx")
    d = tempfile.mkdtemp(prefix="ls-watch-nginx-")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        front = probe.getsockname()[1]
    temps = " ".join(
        f"{k}_temp_path {d}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    with open(os.path.join(d, "nginx.conf"), "w") as fh:
        fh.write(NGINX_CONF.format(d=d, temps=temps, front=front, back=back))
    proc = subprocess.Popen(
        [exe, "-c", f"{d}/nginx.conf", "-p", d, "-e", f"{d}/error.log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(front)
        yield front, proc
    finally:
        stop_process(proc)
        shutil.rmtree(d, ignore_errors=True)


def test_nginx_to_backend_chain_is_not_a_self_call() -> None:
    external = 60
    with (
        gunicorn_app(workers=1, threads=4) as (back, _app_proc),
        nginx_proxy(back) as (front, nginx),
    ):
        report, gen_pid = _watch_while(
            ["127.0.0.1", str(front), "/leaf", str(external), "60"], http=True, ports=(front, back)
        )
        nginx_pids = {nginx.pid} | {c.pid for c in psutil.Process(nginx.pid).children()}
    front_app, back_app = _app(report, front), _app(report, back)
    assert front_app.external_requests == external and front_app.external_connections == external
    assert front_app.self_connections == 0 and front_app.outbound_connections == external
    assert back_app.external_requests == external and back_app.self_connections == 0
    chain = [e for e in report.edges if e.port == back and e.connections]
    assert len(chain) == 1 and not chain[0].self_call and set(chain[0].client_pids) <= nginx_pids
    assert not [e for e in report.edges if e.self_call and e.port in (front, back)]
    assert not [
        f
        for f in check_watch(report)
        if f.code.startswith("SELF_CALL") and f.subject in (front_app.name, back_app.name)
    ]
    assert gen_pid in next(e for e in report.edges if e.port == front).client_pids


RAMP = """
import http.client, sys, threading, time
port = int(sys.argv[1])
def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Connection": "close"}); r = c.getresponse(); r.read(); c.close()
stop = time.monotonic() + 5.0
def health():
    while time.monotonic() < stop:
        get("/healthz"); time.sleep(0.1)
def worker(start_at):
    while time.monotonic() < start_at:
        time.sleep(0.01)
    while time.monotonic() < stop:
        get("/sleep")
t0 = time.monotonic()
threads = [threading.Thread(target=health)]
threads += [threading.Thread(target=worker, args=(t0 + 0.5 * k,)) for k in range(10)]  # load ramps up
for t in threads: t.start()
for t in threads: t.join()
print("done", flush=True)
"""


def test_health_check_slow_under_load() -> None:
    with gunicorn_app(workers=1, threads=2) as (port, _proc):
        with WatchSession(
            WatchOptions(http=True, http_ports=(port,), snapshot_interval_s=0.5)
        ) as session:
            gen = subprocess.Popen(
                [sys.executable, "-c", RAMP, str(port)], stdout=subprocess.PIPE, text=True
            )
            while gen.poll() is None:
                time.sleep(0.1)
                session.poll()
            time.sleep(0.3)
            session.poll()
            report = summarize_watch(session.data())
    app = _app(report, port)
    lat = app.latency_by_path_ms["/healthz"]
    assert len(lat) >= 20 and max(lat) > 5 * min(lat)
    found = [f for f in check_watch(report) if f.code == "HEALTH_CHECK_SLOW_UNDER_LOAD"]
    assert len(found) == 1 and "/healthz" in found[0].subject

"""Live proof on real software at 300 and 3,000 new loopback connections/s: nginx calling itself.

Ground truth by construction, in a fresh network namespace (only its loopback carries traffic):

- nginx (Debian package), ``/ext`` is a static page with three SSI includes (``wait="yes"``: one
  after the other, like blocking calls); each include is a subrequest to ``/self/`` which
  ``proxy_pass``-es to nginx's own listener (``/leaf`` answers ``ok``). nginx's upstream default is
  HTTP/1.0 with ``Connection: close``, so every include is one new TCP connection from an nginx
  worker to the same port: N = 3 self-calls per external request.
- An open-loop load generator (raw sockets, HTTP/1.0, a new connection per request) sends exactly E
  requests to ``/ext`` at a fixed rate; it checks every response is ``200`` with the three ``ok``
  bodies and reports its client ports. Total new connections/s = E_rate x (1 + N): 75 ext/s gives
  300/s, 750 ext/s gives 3,000/s (split over 3 generator processes).

Variants: self-calls to 127.0.0.1; to the namespace's "host address" (10.231.0.1 on one end of a veth
pair kept inside the namespace, standing in for eth0: an address the namespace owns, so the traffic
goes over ``lo`` and is still loopback; a veth, not a dummy, because some kernels lack the dummy driver);
and a keep-alive upstream pool (``keepalive 16``), where connections no longer stand for requests
and the HTTP capture (``--http``) counts requests per pooled connection.

What is asserted exactly: external connections (their client ports and pids are the generator's),
self-call connections and their client pids (nginx workers), amplification 3.0, every connection
caught with its client pid, no source dropped an event; and the namespace's own TCP counters
(ActiveOpens/PassiveOpens in /proc/PID/net/snmp) agree, independently of loopscope. The 127.0.0.1 runs use the default sources
(eBPF sockops, sock_diag destroy, snapshots: connections stand for requests); the host-address runs
add the HTTP capture and assert request counts too. The pool at "3,000/s" is 3,000 requests/s
(750 new external connections/s plus the pooled self-calls); the HTTP capture kept up at both rates
(no drops), so both rates run for every variant.

Needs root (eBPF sockops, netns, AF_PACKET), iproute2 and nginx (Debian: nginx).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import pytest
from procs import stop_process

from loopscope.analysis.watch.report import AppStats, WatchReport, summarize_watch
from loopscope.watch.session import WatchOptions, WatchSession

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns, pytest.mark.services]

PORT = 8080
"""nginx's port: the namespace is fresh, so nothing else can hold it (no bind-close-reuse race)."""
HOST_ADDR = "10.231.0.1"
"""The namespace's own non-loopback address (veth end inside the namespace)."""
N = 3
"""Self-calls per external request (SSI includes per page)."""
BODY = "[ok][ok][ok]\n"
"""What /ext returns when all three includes were answered by /leaf."""
PAGES = {
    prefix: "".join(
        f'[<!--# include virtual="/{prefix}/leaf?i={k}" wait="yes" -->]' for k in range(N)
    )
    + "\n"
    for prefix in ("self", "pool")
}
"""/ext includes /self/leaf (a new connection each), /ext-pool includes /pool/leaf (keep-alive pool)."""

NGINX_CONF = """daemon off; worker_processes 2; user root; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; {temps}
  upstream pool {{ server {target}:{port}; keepalive 16; }}
  server {{ listen {listen};
    location = /ext {{ ssi on; default_type text/html; alias {d}/self.html; }}
    location = /ext-pool {{ ssi on; default_type text/html; alias {d}/pool.html; }}
    location /self/ {{ proxy_pass http://{target}:{port}/; }}
    location /pool/ {{ proxy_pass http://pool/; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location = /leaf {{ default_type text/plain; return 200 "ok"; }} }} }}
"""

CLIENT = """
import json, socket, sys, time
port, count, rate, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
expected = sys.argv[5].encode()
req = b"GET /ext HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n"
ports, bad = [], []
for i in range(count):
    d = start + i / rate - time.monotonic()
    if d > 0: time.sleep(d)
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    ports.append(c.getsockname()[1])
    c.sendall(req)
    chunks = []
    while True:
        b = c.recv(65536)
        if not b: break
        chunks.append(b)
    c.close()
    resp = b"".join(chunks)
    head, _, body = resp.partition(b"\\r\\n\\r\\n")
    if not head.startswith(b"HTTP/1.1 200 ") or body != expected:
        bad.append(resp[:300].decode(errors="replace"))
print(json.dumps({"ports": ports, "bad": bad[:5], "n_bad": len(bad), "end": time.monotonic()}),
      flush=True)
"""


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@contextmanager
def netns() -> Iterator[str]:
    """A fresh namespace with lo up and a veth pair (both ends inside) holding :data:`HOST_ADDR`; deleted
    on exit."""
    if shutil.which("ip") is None:
        pytest.skip("ip not installed: apt-get install iproute2")
    ns = f"lsw-nginx-{os.getpid()}"
    _run("ip", "netns", "add", ns)
    try:
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "link", "add", "h0", "type", "veth", "peer", "name", "h1")
        _run("ip", "-n", ns, "addr", "add", f"{HOST_ADDR}/24", "dev", "h0")
        _run("ip", "-n", ns, "link", "set", "h0", "up")
        _run("ip", "-n", ns, "link", "set", "h1", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@dataclass
class Nginx:
    """A running nginx in the namespace."""

    master: psutil.Process
    workers: set[int]
    tmpdir: str

    def log(self) -> str:
        with open(os.path.join(self.tmpdir, "error.log"), errors="replace") as fh:
            return fh.read()[-2000:]


@contextmanager
def nginx_selfcaller(ns: str, target: str) -> Iterator[Nginx]:
    """nginx in ``ns`` on :data:`PORT` whose /ext calls ``target``:PORT (its own listener) N times."""
    exe = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if exe is None:
        pytest.skip("nginx not installed: apt-get install nginx")
    d = tempfile.mkdtemp(prefix="ls-watch-nginx-self-")
    temps = " ".join(
        f"{k}_temp_path {d}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    listen = (
        f"127.0.0.1:{PORT}" if target == "127.0.0.1" else f"{PORT}"
    )  # 0.0.0.0 for the host address
    with open(os.path.join(d, "nginx.conf"), "w") as fh:
        fh.write(NGINX_CONF.format(d=d, temps=temps, target=target, port=PORT, listen=listen))
    for prefix, page in PAGES.items():
        with open(os.path.join(d, f"{prefix}.html"), "w") as fh:
            fh.write(page)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, exe, "-c", f"{d}/nginx.conf", "-p", d, "-e", f"{d}/error.log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[psutil.Process] = []
    try:
        master = psutil.Process(proc.pid)  # ip netns exec execs nginx: same pid
        deadline = time.monotonic() + 15
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            workers = master.children()
        srv = Nginx(master=master, workers={w.pid for w in workers}, tmpdir=d)
        assert proc.poll() is None and len(srv.workers) == 2, srv.log()
        yield srv
    finally:
        stop_process(proc)
        for w in workers:  # a killed master leaves its workers behind
            if w.is_running():
                w.kill()
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Load:
    """What the load generator did (ground truth)."""

    pids: set[int]
    ports: list[int]
    wall_s: float
    active_opens: int
    """The namespace's TCP ActiveOpens (connect()s that reached SYN_SENT) during the load: the kernel's
    own count, independent of loopscope."""
    passive_opens: int
    """PassiveOpens (connections accepted from LISTEN) during the load."""


def _tcp_opens(pid: int) -> tuple[int, int]:
    """(ActiveOpens, PassiveOpens) of the namespace ``pid`` lives in, from its /proc/PID/net/snmp."""
    with open(f"/proc/{pid}/net/snmp") as fh:
        head, values = [line.split() for line in fh if line.startswith("Tcp:")]
    row = dict(zip(head[1:], values[1:], strict=False))
    return int(row["ActiveOpens"]), int(row["PassiveOpens"])


def _watch_load(
    ns: str, srv: Nginx, path: str, external: int, rate: float, clients: int, *, http: bool
) -> tuple[WatchReport, Load]:
    """Watch ``ns`` (polling every 0.2 s) while ``clients`` generator processes send ``external``
    requests to ``path`` at ``rate`` per second in all, interleaved."""
    client = CLIENT.replace("/ext", path)
    with WatchSession(
        WatchOptions(netns=ns, http=http, http_ports=(PORT,) if http else ())
    ) as session:
        opens = _tcp_opens(srv.master.pid)
        start = time.monotonic() + 0.5  # CLOCK_MONOTONIC: one clock for every process
        gens = [
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    "-c",
                    client,
                    str(PORT),
                    str(external // clients),
                    str(rate / clients),
                    repr(start + k / rate),
                    BODY,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(clients)
        ]
        try:
            while any(g.poll() is None for g in gens):
                time.sleep(0.2)
                session.poll()
            time.sleep(0.3)  # closes of the last connections
            session.poll()
            data = session.data()
            active, passive = (
                b - a for a, b in zip(opens, _tcp_opens(srv.master.pid), strict=False)
            )
        finally:
            for g in gens:
                if g.poll() is None:
                    g.kill()
                g.wait()
    outs = [json.loads(g.stdout.read() if g.stdout else "{}") for g in gens]
    assert [g.returncode for g in gens] == [0] * clients
    assert sum(o["n_bad"] for o in outs) == 0, [o["bad"] for o in outs]
    load = Load(
        pids={g.pid for g in gens},
        ports=[p for o in outs for p in o["ports"]],
        wall_s=max(o["end"] for o in outs) - start,
        active_opens=active,
        passive_opens=passive,
    )
    assert len(load.ports) == external
    return summarize_watch(data), load


def _app(report: WatchReport) -> AppStats:
    (app,) = [a for a in report.apps if PORT in a.ports]
    return app


RATES = [
    pytest.param(600, 75.0, 1, id="300conn/s"),
    pytest.param(4500, 750.0, 3, id="3000conn/s", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("target", ["127.0.0.1", "host"])
@pytest.mark.parametrize(("external", "rate", "clients"), RATES)
def test_nginx_new_connection_per_self_call_exact(
    external: int, rate: float, clients: int, target: str
) -> None:
    http = target == "host"  # the host-address runs also capture HTTP (it keeps up at 3,000/s)
    with (
        netns() as ns,
        nginx_selfcaller(ns, "127.0.0.1" if target == "127.0.0.1" else HOST_ADDR) as srv,
    ):
        report, load = _watch_load(ns, srv, "/ext", external, rate, clients, http=http)
        nginx_pids = {srv.master.pid} | srv.workers
    app = _app(report)
    achieved = external * (1 + N) / load.wall_s
    print(
        f"\n{target} E={external} external={app.external_connections}/{app.external_requests} "
        f"self={app.self_connections}/{app.self_requests} factor={app.self_factor} caught={report.connections} "
        f"kernel opens={load.active_opens}/{load.passive_opens} achieved={achieved:.0f} conn/s "
        f"wall={load.wall_s:.2f}s"
    )
    assert achieved > 0.8 * rate * (1 + N), f"load generator too slow: {achieved:.0f} connections/s"
    assert set(app.pids) == nginx_pids  # master and workers own the listener
    assert app.external_connections == external
    assert app.self_connections == N * external
    assert app.self_factor == float(N) and app.unit == ("requests" if http else "connections")
    assert app.external_requests == (external if http else None)
    assert app.self_requests == (N * external if http else None)
    assert app.per_path_factor == ({"/ext": float(N)} if http else {})
    assert app.outbound_connections == 0
    assert (
        load.active_opens == load.passive_opens == external * (1 + N)
    )  # the kernel agrees: N per /ext
    assert report.connections == external * (1 + N) == report.client_pid_known
    assert not [s for s in report.sources if s.dropped]
    insts = [i for i in report.instances if i.server.port == PORT and i.established]
    ext = [i for i in insts if i.client_pid in load.pids]
    own = [i for i in insts if i.client_pid in srv.workers]
    assert len(ext) == external and len(own) == N * external and len(insts) == len(ext) + len(own)
    assert sorted(i.client.port for i in ext) == sorted(load.ports)
    assert {i.client_pid for i in ext} == load.pids
    assert {str(i.server.address) for i in ext} == {"127.0.0.1"}
    assert {str(i.server.address) for i in own} == {
        "127.0.0.1" if target == "127.0.0.1" else HOST_ADDR
    }
    (self_edge,) = [e for e in report.edges if e.self_call and e.port == PORT]
    assert self_edge.connections == N * external and set(self_edge.client_pids) <= srv.workers
    gen_edges = [e for e in report.edges if e.port == PORT and not e.self_call]
    assert sum(e.connections for e in gen_edges) == external
    assert set().union(*(e.client_pids for e in gen_edges)) == load.pids


@pytest.mark.parametrize(("external", "rate", "clients"), RATES)
def test_nginx_keep_alive_pool_counts_requests(external: int, rate: float, clients: int) -> None:
    with netns() as ns, nginx_selfcaller(ns, "127.0.0.1") as srv:
        report, load = _watch_load(ns, srv, "/ext-pool", external, rate, clients, http=True)
    app = _app(report)
    own = [i for i in report.instances if i.server.port == PORT and i.client_pid in srv.workers]
    print(
        f"\npool E={external} self_requests={app.self_requests} self_connections={app.self_connections} "
        f"factor={app.self_factor} per_path={app.per_path_factor} kernel opens={load.active_opens}/"
        f"{load.passive_opens} achieved={external * (1 + N) / load.wall_s:.0f} requests/s"
    )
    assert external / load.wall_s > 0.8 * rate, (
        f"load generator too slow: {external / load.wall_s:.0f} requests/s"
    )
    assert not [s for s in report.sources if s.dropped]
    assert set(app.pids) == {srv.master.pid} | srv.workers
    assert app.unit == "requests"
    assert app.external_requests == app.external_connections == external
    assert app.self_requests == N * external
    assert app.self_factor == float(N)
    assert app.per_path_factor == {"/ext-pool": float(N)}
    assert (
        1 <= app.self_connections == len(own) < app.self_requests // 10
    )  # pooled: many requests each
    assert (
        load.active_opens == load.passive_opens == external + app.self_connections
    )  # the kernel agrees
    assert sum(len(i.requests) for i in own) == N * external
    assert {i.client_pid for i in own} <= srv.workers
    ext = [i for i in report.instances if i.server.port == PORT and i.client_pid in load.pids]
    assert sorted(i.client.port for i in ext) == sorted(load.ports)
    assert all(len(i.requests) == 1 and [r.status for r in i.responses] == [200] for i in ext)

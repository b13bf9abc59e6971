"""Live: service fingerprints of real servers (Debian packages started by the test), a comparison with
`nmap -sV` on the same ports (127.0.0.1 only), and the cases where identification must not claim a service."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from servers import (
    Server,
    ServerUnavailable,
    memcached_server,
    nginx_server,
    postgres_server,
    python_http_server,
    redis_server,
    sshd_server,
)

from loopscope.probes.fingerprint import fingerprint_listener, fingerprint_listeners

pytestmark = [pytest.mark.linux, pytest.mark.services]

EXPECTED = {
    "redis": ("redis", "Redis"),
    "postgresql": ("postgresql", "PostgreSQL"),
    "nginx-tls": ("https", "nginx"),
    "nginx": ("http", "nginx"),
    "sshd": ("ssh", "OpenSSH"),
    "memcached": ("memcached", "memcached"),
    "python-http": ("http", "BaseHTTP"),
}


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, Server]]:
    """Every real server at once, on 127.0.0.1 (one bound on [::1] too, to cover IPv6)."""
    with ExitStack() as stack:
        out: dict[str, Server] = {}
        starters = {
            "redis": lambda: redis_server(bind=["127.0.0.1", "::1"]),
            "postgresql": lambda: postgres_server(),
            "nginx-tls": lambda: nginx_server(tls=True),
            "nginx": lambda: nginx_server(tls=False),
            "sshd": lambda: sshd_server(),
            "memcached": lambda: memcached_server(),
            "python-http": lambda: python_http_server("127.0.0.1"),
        }
        for name, start in starters.items():
            try:
                out[name] = stack.enter_context(start())
            except ServerUnavailable as exc:
                pytest.skip(str(exc))
        yield out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fingerprint_identifies_real_server(fleet: dict[str, Server], name: str) -> None:
    srv = fleet[name]
    fp = fingerprint_listener((srv.host, srv.port), timeout_s=1.0)
    service, product = EXPECTED[name]
    assert fp.service == service, (fp, srv.log())
    assert fp.product == product
    assert fp.elapsed_s is not None and fp.elapsed_s < 3


def test_fingerprint_versions_match_the_installed_packages(fleet: dict[str, Server]) -> None:
    fps = dict(
        zip(fleet, fingerprint_listeners([(s.host, s.port) for s in fleet.values()]), strict=False)
    )
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    assert f"v={fps['redis'].version} " in redis_v
    mc_v = subprocess.run(
        ["memcached", "--version"], capture_output=True, text=True
    ).stdout.split()[-1]
    assert fps["memcached"].version == mc_v
    ng_v = (
        subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        .stderr.strip()
        .split("/")[-1]
    )
    assert fps["nginx"].version == ng_v and fps["nginx-tls"].version == ng_v
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr
    assert fps["sshd"].version and f"OpenSSH_{fps['sshd'].version}" in ssh_v


def test_fingerprint_over_ipv6(fleet: dict[str, Server]) -> None:
    fp = fingerprint_listener(("::1", fleet["redis"].port))
    assert fp.service == "redis"


def test_closed_port_is_not_identified() -> None:
    with socket.socket() as hold:
        hold.bind(("127.0.0.1", 0))  # reserved, not listening
        fp = fingerprint_listener(hold.getsockname(), timeout_s=0.5)
    assert fp.service == "closed" and fp.detail == "ECONNREFUSED"


def test_unknown_protocol_is_not_claimed() -> None:
    """A server that answers every probe with the same junk must come out 'unknown'."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            try:
                c.settimeout(0.3)
                try:
                    c.recv(100)
                except OSError:
                    pass
                c.sendall(b"\x00\x01garbage\xff")
            finally:
                c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        fp = fingerprint_listener(srv.getsockname(), timeout_s=0.5, banner_wait_s=0.05)
    finally:
        stop.set()
        t.join(2)
        srv.close()
    assert fp.service == "unknown"


def _nmap_services(ports: list[int]) -> dict[int, dict[str, str]]:
    xml = subprocess.run(
        ["nmap", "-sV", "-Pn", "-n", "-p", ",".join(map(str, ports)), "-oX", "-", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout
    out: dict[int, dict[str, str]] = {}
    for port in ET.fromstring(xml).iter("port"):
        svc = port.find("service")
        out[int(port.get("portid", 0))] = dict(svc.attrib) if svc is not None else {}
    return out


def _agrees(ours: str, nmap: dict[str, str]) -> bool:
    name = nmap.get("name", "")
    tunnel = nmap.get("tunnel", "")
    if ours == "https":
        return name in ("http", "https") and (tunnel == "ssl" or name == "https")
    if ours == "http":
        return name == "http" and tunnel != "ssl"
    return ours == name


@pytest.mark.slow
def test_fingerprints_agree_with_nmap(fleet: dict[str, Server]) -> None:
    if shutil.which("nmap") is None:
        pytest.skip("nmap not installed: apt-get install nmap")
    names = list(fleet)
    ports = [fleet[n].port for n in names]
    import time

    t0 = time.perf_counter()
    ours = fingerprint_listeners([("127.0.0.1", p) for p in ports])
    t1 = time.perf_counter()
    theirs = _nmap_services(ports)
    t2 = time.perf_counter()
    rows = []
    for name, port, fp in zip(names, ports, ours, strict=False):
        nm = theirs.get(port, {})
        rows.append(
            {
                "server": name,
                "port": port,
                "loopscope": fp.label,
                "nmap": " ".join(
                    v
                    for v in (
                        nm.get("tunnel"),
                        nm.get("name"),
                        nm.get("product"),
                        nm.get("version"),
                    )
                    if v
                ),
                "agree": _agrees(fp.service, nm),
                "loopscope_ms": round((fp.elapsed_s or 0) * 1e3, 1),
            }
        )
    report = os.environ.get("LOOPSCOPE_NMAP_REPORT", "/tmp/loopscope-nmap-agreement.json")
    with open(report, "w") as fh:
        json.dump(
            {"rows": rows, "loopscope_wall_s": round(t1 - t0, 3), "nmap_wall_s": round(t2 - t1, 3)},
            fh,
            indent=2,
        )
    print(json.dumps(rows, indent=2))
    assert all(r["agree"] for r in rows), rows

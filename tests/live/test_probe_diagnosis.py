"""Live: `loopscope probe` explains failures with real listeners, real netns, a real nftables rule, a real
full accept queue and a real Nagle stall. Each diagnosis has a case where it fires and one where it must not."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from procs import python_child, run_loopscope
from servers import free_port, python_http_server

from loopscope.analysis.probe.target import parse_target
from loopscope.model import InterfaceAddress
from loopscope.probes.run import run_probe

pytestmark = [pytest.mark.linux]


def _host_v4() -> InterfaceAddress | None:
    from loopscope.backends.linux.rtnl import read_addresses

    return next(
        (a for a in read_addresses()[1] if a.address.version == 4 and not a.address.is_loopback),
        None,
    )


def _codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings}


@pytest.fixture
def host_v4() -> InterfaceAddress:
    addr = _host_v4()
    if addr is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    return addr


def test_loopback_only_listener_fails_on_host_address_and_is_diagnosed(
    host_v4: InterfaceAddress,
) -> None:
    with python_http_server("127.0.0.1") as srv:
        report = run_probe(parse_target(f":{srv.port}"), addresses=[host_v4], timeout_s=1.0)
    by_addr = {r.candidate.address: r for r in report.results}
    assert by_addr["127.0.0.1"].ok
    assert (
        not by_addr[str(host_v4.address)].ok
        and by_addr[str(host_v4.address)].first.error == "ECONNREFUSED"
    )
    finding = next(
        f
        for f in report.findings
        if f.code == "PROBE_NOT_BOUND_TO_ADDRESS" and str(host_v4.address) in f.evidence
    )
    assert (
        "127.0.0.1" in finding.evidence and "bind to 0.0.0.0 or the host address" in finding.remedy
    )


def test_wildcard_listener_passes_on_host_address(host_v4: InterfaceAddress) -> None:
    with python_http_server("0.0.0.0") as srv:
        report = run_probe(parse_target(f":{srv.port}"), addresses=[host_v4], timeout_s=1.0)
    by_addr = {r.candidate.address: r for r in report.results}
    assert by_addr["127.0.0.1"].ok and by_addr[str(host_v4.address)].ok
    assert by_addr[str(host_v4.address)].first.http is not None
    assert not any(str(host_v4.address) in f.evidence for f in report.findings)


def test_v6_loopback_only_listener_is_diagnosed_and_dual_stack_passes() -> None:
    with python_http_server("::1") as srv:
        report = run_probe(parse_target(f":{srv.port}"), addresses=[], timeout_s=1.0)
        ok = {r.candidate.address: r.ok for r in report.results}
        assert ok["::1"] and not ok["127.0.0.1"]
        f = next(f for f in report.findings if f.code == "PROBE_NOT_BOUND_TO_ADDRESS")
        assert "[::1]" in f.evidence and "127.0.0.1" in f.remedy
    with python_http_server("::1") as v6, python_http_server("127.0.0.1", v6.port):
        report = run_probe(parse_target(f":{v6.port}"), addresses=[], timeout_s=1.0)
        assert all(r.ok for r in report.results) and not report.findings


def test_nothing_listening() -> None:
    with socket.socket() as hold:  # keep the port reserved but not listening
        hold.bind(("127.0.0.1", 0))
        port = hold.getsockname()[1]
        report = run_probe(parse_target(f":{port}"), addresses=[], timeout_s=1.0)
    assert "PROBE_NOTHING_LISTENING" in _codes(report)
    assert all(not r.ok for r in report.results)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"lsprobe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


SERVE = """
import json, os, socket, threading
s = socket.socket(); s.bind(("127.0.0.1", PORT)); s.listen(16)
def loop():
    while True:
        c, _ = s.accept()
        c.recv(4096)
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
        c.close()
threading.Thread(target=loop, daemon=True).start()
print(json.dumps({"pid": os.getpid(), "port": s.getsockname()[1]}), flush=True)
"""


@pytest.mark.root
@pytest.mark.netns
def test_listener_in_other_netns_is_found(netns: str) -> None:
    port = free_port()
    with python_child(SERVE.replace("PORT", str(port)), prefix=["ip", "netns", "exec", netns]):
        report = run_probe(parse_target(f":{port}"), addresses=[], timeout_s=1.0)
        f = next(f for f in report.findings if f.code == "PROBE_LISTENER_IN_OTHER_NETNS")
        assert netns in f.evidence and f"127.0.0.1:{port}" in f.evidence
        # the same port probed inside that namespace works: no diagnosis there
        res = run_loopscope(
            "probe", f"127.0.0.1:{port}", "--json", prefix=["ip", "netns", "exec", netns]
        )
        doc = json.loads(res.stdout)
        assert res.returncode == 0 and doc["addresses"][0]["ok"] and doc["findings"] == []


@pytest.mark.root
@pytest.mark.netns
def test_nft_rule_dropping_loopback_port_is_found(netns: str) -> None:
    port = free_port()
    with python_child(SERVE.replace("PORT", str(port)), prefix=["ip", "netns", "exec", netns]):
        before = run_loopscope(
            "probe",
            f"127.0.0.1:{port}",
            "--timeout",
            "0.5",
            "--json",
            prefix=["ip", "netns", "exec", netns],
        )
        assert json.loads(before.stdout)["addresses"][0]["ok"], before.stderr
        rules = (
            f"table inet lsprobe {{\n chain input {{\n type filter hook input priority 0; policy accept;\n"
            f' iifname "lo" tcp dport {port} drop\n }}\n}}\n'
        )
        subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "-f", "-"], input=rules, text=True, check=True
        )
        after = run_loopscope(
            "probe",
            f"127.0.0.1:{port}",
            "--timeout",
            "0.5",
            "--json",
            prefix=["ip", "netns", "exec", netns],
        )
    doc = json.loads(after.stdout)
    assert after.returncode == 1, after.stderr
    assert doc["addresses"][0]["attempts"][0]["error"] == "ETIMEDOUT"
    f = next(f for f in doc["findings"] if f["code"] == "PROBE_FIREWALL_BLOCKS")
    assert "nft inet lsprobe input" in f["evidence"] and f"dport {port} drop" in f["evidence"]


FULL_QUEUE = """
import json, os, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)   # never accepts
port = s.getsockname()[1]
held = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    c.connect_ex(("127.0.0.1", port)); held.append(c)
print(json.dumps({"pid": os.getpid(), "port": port}), flush=True)
"""

IDLE_QUEUE = """
import json, os, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)   # never accepts, queue has room
print(json.dumps({"pid": os.getpid(), "port": s.getsockname()[1]}), flush=True)
"""


def test_accept_queue_full_is_diagnosed() -> None:
    import time

    with python_child(FULL_QUEUE) as (_, info):
        time.sleep(0.2)
        report = run_probe(parse_target(f"127.0.0.1:{info['port']}"), timeout_s=0.5, addresses=[])
    assert not report.results[0].ok and report.results[0].first.error == "ETIMEDOUT"
    f = next(f for f in report.findings if f.code == "PROBE_ACCEPT_QUEUE_FULL")
    assert "backlog 1" in f.evidence


def test_accept_queue_with_room_connects_and_is_not_flagged() -> None:
    with python_child(IDLE_QUEUE) as (_, info):
        report = run_probe(
            parse_target(f"tcp://127.0.0.1:{info['port']}"), timeout_s=0.5, addresses=[]
        )
    assert report.results[0].ok and "PROBE_ACCEPT_QUEUE_FULL" not in _codes(report)


def test_nagle_stall_found_on_split_sends_without_nodelay() -> None:
    with python_http_server("127.0.0.1", nodelay=False, split_sends=True) as srv:
        report = run_probe(
            parse_target(f"127.0.0.1:{srv.port}/"), count=12, timeout_s=2.0, addresses=[]
        )
    totals = [a.http.total_s for a in report.results[0].attempts if a.http]
    assert sum(1 for t in totals if t > 0.035) >= 5, totals
    assert "NAGLE_DELAYED_ACK_STALL" in _codes(report)


def test_no_nagle_stall_with_nodelay() -> None:
    with python_http_server("127.0.0.1", nodelay=True, split_sends=True) as srv:
        report = run_probe(
            parse_target(f"127.0.0.1:{srv.port}/"), count=12, timeout_s=2.0, addresses=[]
        )
    assert report.results[0].ok and "NAGLE_DELAYED_ACK_STALL" not in _codes(report)
    assert all(a.reused_connection for a in report.results[0].attempts[1:])


@pytest.mark.services
@pytest.mark.parametrize(("days", "code"), [(3, "PROBE_TLS_CERT_EXPIRING"), (30, None)])
def test_tls_certificate_expiry_real_nginx(days: int, code: str | None) -> None:
    from servers import ServerUnavailable, nginx_server

    try:
        with nginx_server(bind="127.0.0.1", tls=True, cert_days=days) as srv:
            report = run_probe(parse_target(f"127.0.0.1:{srv.port}/"), addresses=[], timeout_s=1.0)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    assert report.mode == "https" and report.results[0].ok
    tls = report.results[0].first.tls
    assert (
        tls is not None
        and tls.expires_in_s is not None
        and abs(tls.expires_in_s - days * 86400) < 600
    )
    found = {f.code for f in report.findings if f.code.startswith("PROBE_TLS")}
    assert found == ({code} if code else set())

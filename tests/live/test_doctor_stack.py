"""Live: the doctor's stack and port checks against real kernel state set up in a netns we create:
IPv6 disabled by sysctl, route_localnet, lo MTU, TIME_WAIT and ephemeral port pressure, somaxconn, a full
accept queue, and rung 2 through a veth pair (down interface; firewall rule on the host address)."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid

import pytest
from procs import run_loopscope

from loopscope.backends.linux.netns import resolve_netns, run_in_netns

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns]


@pytest.fixture
def netns():  # type: ignore[no-untyped-def]
    name = f"ls-dst-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _sysctl(netns: str, setting: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", setting], check=True)


def _checks(netns: str, *args: str) -> tuple[int, dict[str, dict]]:  # type: ignore[type-arg]
    result = run_loopscope("doctor", "--netns", netns, "--json", "--no-processes", *args)
    doc = json.loads(result.stdout)
    return result.returncode, {
        c["id"]: c for r in doc["namespaces"][0]["rungs"] for c in r["checks"]
    }


def test_ipv6_disabled_is_ok_and_named(netns):
    _sysctl(netns, "net.ipv6.conf.all.disable_ipv6=1")
    code, checks = _checks(netns, "--rung", "1")
    assert checks["lo.ipv6"]["verdict"] == "ok"
    assert "net.ipv6.conf.all.disable_ipv6=1" in checks["lo.ipv6"]["evidence"]
    assert (
        checks["echo.tcp.::1"]["verdict"] == "skipped"
        and checks["icmp.::1"]["verdict"] == "skipped"
    )
    assert code == 0


def test_missing_v6_loopback_with_ipv6_on_fails(netns):
    subprocess.run(["ip", "-n", netns, "-6", "addr", "del", "::1/128", "dev", "lo"], check=True)
    code, checks = _checks(netns, "--rung", "1")
    assert code == 1 and checks["lo.ipv6"]["verdict"] == "fail"
    assert checks["lo.ipv6"]["remedy"] == f"ip -n {netns} -6 addr add ::1/128 dev lo"


def test_route_localnet_warns(netns):
    _sysctl(netns, "net.ipv4.conf.all.route_localnet=1")
    _code, checks = _checks(netns, "--rung", "1")
    assert (
        checks["lo.localnet"]["verdict"] == "warn"
        and "conf.all.route_localnet=1" in checks["lo.localnet"]["evidence"]
    )


def test_small_lo_mtu_warns(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "mtu", "16000"], check=True)
    _code, checks = _checks(netns, "--rung", "1")
    assert checks["lo.mtu"]["verdict"] == "warn" and checks["lo.mtu"]["data"]["mtu"] == 16000


def _hold(netns: str, fn):  # type: ignore[no-untyped-def]
    return run_in_netns(resolve_netns(netns), fn)


def test_time_wait_and_ephemeral_pressure(netns):
    _sysctl(netns, "net.ipv4.ip_local_port_range=40000 40099")  # 100 ports
    _sysctl(netns, "net.ipv4.tcp_tw_reuse=0")

    def churn():  # type: ignore[no-untyped-def]
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(128)
        for _ in range(60):  # the client closes first: its side goes to TIME_WAIT
            c = socket.create_connection(srv.getsockname())
            a, _ = srv.accept()
            c.close()
            a.close()
        return srv

    srv = _hold(netns, churn)
    try:
        code, checks = _checks(netns, "--rung", "1")
        tw = checks["ports.time_wait"]
        assert tw["verdict"] == "fail" and tw["data"]["time_wait_loopback"] >= 60 and code == 1
        assert "holds 60 ephemeral ports (60% of 100)" in tw["evidence"]
        _sysctl(netns, "net.ipv4.tcp_tw_reuse=2")
        assert _checks(netns, "--rung", "1")[1]["ports.time_wait"]["verdict"] == "warn"
    finally:
        srv.close()


def test_ephemeral_ports_held_toward_one_destination_fail(netns):
    _sysctl(netns, "net.ipv4.ip_local_port_range=40000 40099")

    def hold():  # type: ignore[no-untyped-def]
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(128)
        keep = [srv]
        for _ in range(60):
            keep.append(socket.create_connection(srv.getsockname()))
            keep.append(srv.accept()[0])
        return keep

    keep = _hold(netns, hold)
    try:
        _code, checks = _checks(netns, "--rung", "1")
        eph = checks["ports.ephemeral"]
        assert eph["verdict"] == "fail" and "holds 60 (60%)" in eph["evidence"]
    finally:
        for s in keep:
            s.close()


def test_somaxconn_and_full_accept_queue(netns):
    _code, checks = _checks(netns, "--rung", "1")
    assert checks["ports.somaxconn"]["verdict"] == "ok"
    _sysctl(netns, "net.core.somaxconn=128")

    def fill():  # type: ignore[no-untyped-def]
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        clients = []
        for _ in range(2):  # backlog 1: two completed connections wait for accept()
            c = socket.socket()
            c.settimeout(0.5)
            c.connect(srv.getsockname())
            clients.append(c)
        return [srv, *clients]

    keep = _hold(netns, fill)
    try:
        _code, checks = _checks(netns, "--rung", "1")
        som = checks["ports.somaxconn"]
        assert (
            som["verdict"] == "warn"
            and som["code"] == "ACCEPT_QUEUE_FULL"
            and "(2/1)" in som["evidence"]
        )
    finally:
        for s in keep:
            s.close()
    _code, checks = _checks(netns, "--rung", "1")
    assert checks["ports.somaxconn"]["code"] == "SOMAXCONN_SMALL"


def test_rung2_through_a_veth_pair(netns):
    ip = ["ip", "-n", netns]
    subprocess.run([*ip, "link", "add", "lsv0", "type", "veth", "peer", "name", "lsv1"], check=True)
    subprocess.run([*ip, "addr", "add", "10.213.0.1/24", "dev", "lsv0"], check=True)
    subprocess.run([*ip, "link", "set", "lsv1", "up"], check=True)
    subprocess.run([*ip, "link", "set", "lsv0", "up"], check=True)
    subprocess.run([*ip, "route", "add", "default", "via", "10.213.0.2"], check=True)
    code, checks = _checks(netns)
    assert (
        checks["net.interfaces"]["verdict"] == "ok"
        and checks["net.default_route"]["verdict"] == "ok"
    )
    assert checks["echo.tcp.10.213.0.1"]["verdict"] == "ok" and code == 0
    # a host firewall rule on the host address: rung 2's echo catches it
    subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"],
        check=True,
        text=True,
        input=(
            "table inet lsdoc {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
            "  ip daddr 10.213.0.1 tcp flags syn drop\n }\n}\n"
        ),
    )
    code, checks = _checks(netns)
    assert (
        checks["echo.tcp.10.213.0.1"]["verdict"] == "fail"
        and "timed out" in checks["echo.tcp.10.213.0.1"]["evidence"]
    )
    assert code == 1
    # every non-loopback interface down: rung 2 fails
    subprocess.run([*ip, "link", "set", "lsv0", "down"], check=True)
    subprocess.run([*ip, "link", "set", "lsv1", "down"], check=True)
    code, checks = _checks(netns)
    assert checks["net.interfaces"]["verdict"] == "fail" and code == 1


def test_icmp_echo_ignored_by_sysctl(netns):
    _sysctl(netns, "net.ipv4.icmp_echo_ignore_all=1")
    code, checks = _checks(netns, "--rung", "1")
    icmp = checks["icmp.127.0.0.1"]
    assert (
        icmp["verdict"] == "warn"
        and icmp["code"] == "ICMP_ECHO_IGNORED"
        and "0/1 replies" in icmp["evidence"]
    )
    assert (
        checks["icmp.::1"]["verdict"] == "ok"
        and checks["echo.tcp.127.0.0.1"]["verdict"] == "ok"
        and code == 0
    )

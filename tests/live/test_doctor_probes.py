"""Live: the doctor's readers and probes against the real kernel: routes vs `ip -j route`, ICMP (raw and
unprivileged datagram sockets), TCP/UDP echo, rung 3 external connect, and the sysctl readers."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from procs import run_loopscope

from loopscope.backends.linux import icmp, routes
from loopscope.backends.linux.netns import resolve_netns, run_in_netns
from loopscope.backends.linux.rtnl import read_links
from loopscope.backends.linux.sysctl import read_sysctls
from loopscope.doctor import probes

pytestmark = [pytest.mark.linux, pytest.mark.root]
A = ipaddress.ip_address


@pytest.fixture
def netns():  # type: ignore[no-untyped-def]
    name = f"ls-dpr-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _norm(dst: str, family: int) -> str:
    return str(ipaddress.ip_network(dst if "/" in dst else f"{dst}/{32 if family == 4 else 128}"))


def test_local_table_matches_ip_route():
    names = {link.index: link.name for link in read_links()}
    got, lookups = routes.read_routes((A("127.0.0.1"), A("::1")), names)
    mine = {(r.type, r.dst, r.dev) for r in got if r.table == routes.RT_TABLE_LOCAL}
    theirs = set()
    for fam, flag in ((4, "-4"), (6, "-6")):
        out = subprocess.run(
            ["ip", flag, "-j", "route", "show", "table", "local"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        theirs |= {
            (r.get("type", "unicast"), _norm(r["dst"], fam), r.get("dev")) for r in json.loads(out)
        }
    assert mine == theirs
    assert [(x.type, x.dev) for x in lookups] == [("local", "lo"), ("local", "lo")]


def test_route_get_in_lo_down_netns_is_unreachable(netns):
    def inside():  # type: ignore[no-untyped-def]
        return routes.read_routes((A("127.0.0.1"),), {})

    got, lookups = run_in_netns(resolve_netns(netns), inside)
    assert [r for r in got if r.table == routes.RT_TABLE_LOCAL] == []
    assert lookups[0].error == "Network is unreachable (errno 101)"


@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "127.0.0.2"])
def test_raw_ping(target):
    res = icmp.ping(A(target), method="raw", count=3)
    assert (res.sent, res.received, res.error) == (3, 3, None) and all(
        0 < r < 300_000 for r in res.rtts_us
    )


def test_dgram_ping_where_ping_group_range_allows(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 0"], check=True
    )

    def inside():  # type: ignore[no-untyped-def]
        return [icmp.ping(A(t), method="dgram", count=2) for t in ("127.0.0.1", "::1")]

    for res in run_in_netns(resolve_netns(netns), inside):
        assert (res.method, res.received, res.error) == ("dgram", 2, None)


def test_icmp_method_reason_when_not_allowed():
    method, reason = icmp.icmp_method((1, 0))
    assert method == "raw" and reason is None  # root: raw sockets
    assert icmp.ping(A("::1"), method="none", skipped_reason="why").skipped_reason == "why"


def test_checksum_golden():
    assert icmp.checksum(bytes.fromhex("0800000012340001")) == 0xE5CA
    packet = icmp.build_echo(4, 0x1234, 1, b"")
    assert icmp.checksum(packet) == 0  # a correct checksum sums to zero


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1", "127.0.0.2"])
def test_echo_probes_pass(addr):
    tcp = probes.tcp_echo(A(addr), rounds=3)
    udp = probes.udp_echo(A(addr), rounds=3)
    assert tcp.error is None and tcp.phase == "done" and len(tcp.rtts_us) == 3 and tcp.connect_us
    assert udp.error is None and len(udp.rtts_us) == 3


def test_echo_probes_fail_with_lo_down(netns):
    def inside():  # type: ignore[no-untyped-def]
        return (
            probes.tcp_echo(A("127.0.0.1")),
            probes.udp_echo(A("127.0.0.1")),
            probes.tcp_echo(A("::1")),
        )

    tcp, udp, v6 = run_in_netns(resolve_netns(netns), inside)
    assert tcp.phase == "connect" and "ENETUNREACH" in (tcp.error or "")
    assert udp.error and "ENETUNREACH" in udp.error
    assert v6.phase == "bind" and "EADDRNOTAVAIL" in (v6.error or "")


def test_tcp_echo_leaves_no_time_wait():
    res = probes.tcp_echo(A("127.0.0.2"), rounds=1)
    out = subprocess.run(
        ["ss", "-Htan", "state", "time-wait", f"( sport = :{res.port} or dport = :{res.port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == ""


def test_sysctl_reader_sees_the_namespace(netns):
    subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.conf.lo.route_localnet=1"],
        check=True,
    )

    def inside():  # type: ignore[no-untyped-def]
        return read_sysctls(link.name for link in read_links())

    inner = run_in_netns(resolve_netns(netns), inside)
    assert inner.route_localnet["lo"] is True and inner.ipv6_module
    assert read_sysctls(link.name for link in read_links()).route_localnet.get("lo") is False


def test_external_rung_against_a_local_listener():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        ok = run_loopscope("doctor", "--json", "--no-processes", "--external", f"localhost:{port}")
    doc = json.loads(ok.stdout)
    rung3 = doc["namespaces"][0]["rungs"][2]
    checks = {c["id"]: c for c in rung3["checks"]}
    assert rung3["rung"] == 3 and checks["ext.dns"]["verdict"] == "ok"
    assert (
        checks["ext.connect"]["verdict"] == "ok"
        and checks["ext.connect"]["data"]["attempts"][0]["connect_us"] > 0
    )
    # the port is closed now: connection refused, rung 3 fails
    closed = json.loads(
        run_loopscope(
            "doctor", "--json", "--no-processes", "--rung", "1", "--external", f"127.0.0.1:{port}"
        ).stdout
    )
    last = {c["id"]: c for c in closed["namespaces"][0]["rungs"][-1]["checks"]}
    assert (
        last["ext.connect"]["verdict"] == "fail"
        and "ECONNREFUSED" in last["ext.connect"]["evidence"]
    )
    assert last["ext.dns"]["verdict"] == "skipped"


def _unprivileged_rung1(netns_path: str | None = None) -> dict[str, tuple[str, str]]:
    """Fork; the child enters ``netns_path`` (if given), drops to uid/gid 65534, runs rung 1 and sends
    ``{check id: (verdict, evidence)}`` back through a pipe."""
    import ctypes
    import encodings.ascii
    import encodings.idna  # noqa: F401   the interpreter's tree under /root, which uid 65534 cannot)
    import heapq  # noqa: F401
    import os
    import pickle

    from loopscope.analysis.doctor.ladder import judge
    from loopscope.doctor.gather import DoctorOptions, gather

    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            if netns_path:
                fd = os.open(netns_path, os.O_RDONLY)
                assert libc.setns(fd, 0x40000000) == 0
                os.close(fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            rungs = judge(gather([None], DoctorOptions(max_rung=1, attribute=False))[0])
            out: object = {c.id: (c.verdict.value, c.evidence) for c in rungs[0].checks}
        except BaseException as exc:
            out = repr(exc)
        try:
            os.write(w, pickle.dumps(out))
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    checks = pickle.loads(data)
    assert isinstance(checks, dict), checks
    return checks


def test_unprivileged_doctor_skips_icmp_and_firewall_with_reasons():
    """uid/gid 65534 on the host: no raw ICMP (ping_group_range excludes it here), no ruleset access; both
    are skipped with the reason, everything else still passes."""
    with open("/proc/sys/net/ipv4/ping_group_range") as fh:
        low, high = map(int, fh.read().split())
    if low <= 65534 <= high:
        pytest.skip("ping_group_range allows gid 65534 here")
    checks = _unprivileged_rung1()
    assert (
        checks["icmp.127.0.0.1"][0] == "skipped"
        and "ping_group_range" in checks["icmp.127.0.0.1"][1]
    )
    assert (
        checks["firewall.loopback"][0] == "skipped"
        and "run as root" in checks["firewall.loopback"][1]
    )
    assert checks["echo.tcp.127.0.0.1"][0] == "ok" and checks["lo.routes"][0] == "ok"


def test_unprivileged_doctor_uses_the_icmp_datagram_socket_where_allowed(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"],
        check=True,
    )
    checks = _unprivileged_rung1(f"/run/netns/{netns}")
    for target in ("127.0.0.1", "::1"):
        verdict, evidence = checks[f"icmp.{target}"]
        assert verdict == "ok" and evidence.startswith("dgram socket: 3/3 replies")


def _rtmsg(
    family: int, dst_len: int, table: int, rtype: int, attrs: list[tuple[int, bytes]]
) -> bytes:
    import struct

    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 2, 254, rtype, 0)
    for kind, payload in attrs:
        length = 4 + len(payload)
        body += struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)
    return body


def test_parse_route_golden():
    import struct

    payload = _rtmsg(
        socket.AF_INET,
        8,
        255,
        2,
        [
            (15, struct.pack("=I", 255)),
            (1, bytes([127, 0, 0, 0])),
            (7, bytes([127, 0, 0, 1])),
            (4, struct.pack("=i", 1)),
        ],
    )
    route = routes.parse_route(payload, {1: "lo"})
    assert route is not None
    assert (route.family, route.table, route.type, route.dst, route.dev, route.prefsrc) == (
        4,
        255,
        "local",
        "127.0.0.0/8",
        "lo",
        A("127.0.0.1"),
    )
    default = routes.parse_route(
        _rtmsg(socket.AF_INET6, 0, 254, 1, [(5, A("fd00::1").packed), (4, struct.pack("=i", 2))]),
        {1: "lo"},
    )
    assert default is not None and (default.dst, default.gateway, default.dev) == (
        "default",
        A("fd00::1"),
        "if2",
    )
    # RTA_TABLE (u32) wins over the u8 rtm_table, for tables above 255
    big = routes.parse_route(_rtmsg(socket.AF_INET, 0, 252, 1, [(15, struct.pack("=I", 1000))]), {})
    assert big is not None and big.table == 1000


def test_lookup_error_from_a_replayed_reply():
    import struct

    from loopscope.backends.linux.netlink import ReplayTransport, pack_message

    err = pack_message(2, 0, 20, struct.pack("=i", -101) + b"\0" * 16)
    found = routes.lookup_route(ReplayTransport([err]), A("127.0.0.1"), {})
    assert found.error == "Network is unreachable (errno 101)" and found.type is None


# --- the hosts file is read capped and decoded leniently (issue #15, items 4 and 7) ---------------


def test_hosts_file_read_is_capped_at_one_mib() -> None:
    from loopscope.doctor.gather import HOSTS_MAX_BYTES, read_text_capped

    text, note = read_text_capped("/dev/zero")
    assert len(text) <= HOSTS_MAX_BYTES
    assert note is not None and "only the first" in note


def test_hosts_file_with_bad_bytes_is_read(tmp_path: Path) -> None:
    from loopscope.analysis.doctor.resolution import parse_hosts
    from loopscope.doctor.gather import read_text_capped

    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.1 localhost\n::1 localhost \xff\xfe\n")
    text, note = read_text_capped(str(hosts))
    assert note == f"{hosts}: not UTF-8; bad bytes replaced"
    assert [str(e.address) for e in parse_hosts(text) if "localhost" in e.names] == [
        "127.0.0.1",
        "::1",
    ]


def test_doctor_hosts_file_missing_or_huge_from_the_cli(tmp_path: Path) -> None:
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loopscope", "doctor", "--json", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    missing = run("--hosts-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert missing.stdout == ""
    huge = run("--hosts-file", "/dev/zero")
    assert huge.returncode in (0, 1), huge.stderr
    assert "only the first 1048576 read" in huge.stdout

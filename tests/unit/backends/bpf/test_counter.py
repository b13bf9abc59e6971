"""The in-kernel counting program: golden decoders, documented instructions, and (root) exact counts,
map-full accounting and detach on close, checked with BPF_PROG_QUERY on the cgroup root."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.backends.linux.bpf.counter import (
    CLIENT_KEY,
    KEY,
    ConnectionCounter,
    build_counter_program,
    decode_count_key,
    encode_client_key,
    possible_cpus,
)
from loopscope.backends.linux.bpf.sockops import count_attached_sockops
from loopscope.backends.linux.bpf.syscall import Insn, assemble
from loopscope.errors import ParseError
from loopscope.model import Family

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_BPF, cgroup attach)")


def test_decode_an_active_ipv4_key() -> None:
    key = KEY.pack(b"curl", 3, 2, bytes.fromhex("7f000001") + bytes(12), 4026531840, 0x901F0000, 1)
    got = decode_count_key(key, 7)
    assert got.client_comm == "curl" and not got.passive and got.family is Family.INET
    assert got.address == ipaddress.IPv4Address("127.0.0.1") and got.port == 8080
    assert got.netns_cookie == 4026531840 and got.peer_local and got.count == 7


def test_decode_a_passive_ipv6_key_with_a_remote_peer() -> None:
    key = KEY.pack(b"", 5, 10, ipaddress.IPv6Address("::1").packed, 3, 8080, 0)
    got = decode_count_key(key, 1)
    assert got.passive and got.client_comm is None and got.port == 8080
    assert got.address == ipaddress.IPv6Address("::1") and not got.peer_local


def test_hostile_comm_bytes_decode_with_replacement() -> None:
    key = KEY.pack(b'a"\n{}\xff', 3, 2, bytes(16), 1, 0x50000000, 1)
    assert decode_count_key(key, 1).client_comm == 'a"\n{}\ufffd'


def test_client_key_golden() -> None:
    lo = ipaddress.IPv4Address("127.0.0.1")
    got = encode_client_key((lo, 51000), (lo, 8080), 7)
    assert (
        got.hex()
        == (
            "0200000038c700007f000001"
            + "00" * 12
            + "00001f90"
            + "00000000"
            + "7f000001"
            + "00" * 12
        )
        + "0700000000000000"
    )
    one = ipaddress.IPv6Address("::1")
    v6 = encode_client_key((one, 8080), (one, 443), 2**64 - 1)
    assert v6[:8] == struct.pack("=II", 10, 8080) and v6[8:24] == bytes(15) + b"\x01"
    assert v6[24:28] == bytes([0, 0, 0x01, 0xBB])  # the ctx value: be16 443 in the upper half
    assert v6[32:48] == bytes(15) + b"\x01" and len(v6) == CLIENT_KEY.size == 56


def test_possible_cpus() -> None:
    assert possible_cpus("0-3,8\n") == 5
    assert possible_cpus("0\n") == 1


def test_every_instruction_is_documented_and_assembles() -> None:
    plain = [x for x in build_counter_program(5, 6) if isinstance(x, Insn)]
    prog = build_counter_program(5, 6, 7)
    insns = [x for x in prog if isinstance(x, Insn)]
    assert len(insns) > len(plain) and all(i.comment for i in plain)
    assert all(i.comment for i in insns)
    code = assemble(prog)
    assert len(code) % 8 == 0 and len(code) // 8 < 4096


_CLIENT = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    socket.create_connection((host, port)).close()
"""


def _run_client(host: str, port: int, n: int, name: str) -> None:
    code = f"import ctypes; ctypes.CDLL(None).prctl(15, {name!r}.encode(), 0, 0, 0)\n" + _CLIENT
    subprocess.run([sys.executable, "-c", code, host, str(port), str(n)], check=True, timeout=30)


@pytest.mark.linux
@pytest.mark.root
@root_only
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_counts_exactly_per_client_name_and_detaches_on_close(host: str) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(fam)
    srv.bind((host, 0))
    srv.listen(512)
    port = srv.getsockname()[1]
    with ConnectionCounter() as counter:
        cgroup = counter.cgroup_path
        during = count_attached_sockops(cgroup)
        _run_client(host, port, 40, "ls-cnt-a")
        _run_client(host, port, 25, "ls-cnt-b")
        time.sleep(0.05)
        rows = [r for r in counter.read() if r.port == port]
        active = {r.client_comm: r.count for r in rows if not r.passive}
        passive = sum(r.count for r in rows if r.passive and r.peer_local)
        assert active == {"ls-cnt-a": 40, "ls-cnt-b": 25}
        assert passive == 65
        assert counter.map_full() == 0
    assert count_attached_sockops(cgroup) == during - 1
    counter.close()  # idempotent
    srv.close()


@pytest.mark.linux
@pytest.mark.root
@root_only
def test_detach_stops_counting_and_attach_resumes_it() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    port = srv.getsockname()[1]
    with ConnectionCounter() as counter:
        cgroup = counter.cgroup_path
        during = count_attached_sockops(cgroup)
        _run_client("127.0.0.1", port, 10, "ls-cnt-on")
        counter.detach()
        assert not counter.attached
        assert count_attached_sockops(cgroup) == during - 1
        _run_client("127.0.0.1", port, 7, "ls-cnt-off")  # not counted: the program is unlinked
        counter.attach()
        counter.attach()  # idempotent: one link
        assert counter.attached
        assert count_attached_sockops(cgroup) == during
        _run_client("127.0.0.1", port, 5, "ls-cnt-on")
        time.sleep(0.05)
        active = {
            r.client_comm: r.count for r in counter.read() if r.port == port and not r.passive
        }
        assert active == {"ls-cnt-on": 15}
    srv.close()


_HELD = """
import ctypes, json, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
c = socket.socket(socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET)
if len(sys.argv) > 4:  # this local port, shared with another connection to another server
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind((sys.argv[2], int(sys.argv[4])))
c.connect((sys.argv[2], int(sys.argv[3])))
print(json.dumps(c.getsockname()[:2]), flush=True)
sys.stdin.read()
"""


@pytest.mark.linux
@pytest.mark.root
@root_only
@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_the_client_endpoint_names_its_comm(host: str) -> None:
    import json

    from loopscope.backends.linux.bpf.sockops import netns_cookie_of_current

    v6 = ":" in host
    srv = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
    if host.startswith("::ffff:"):
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.bind(("::", 0))
    else:
        srv.bind((host, 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    cookie = netns_cookie_of_current()
    assert cookie is not None
    t0 = time.monotonic_ns()
    with ConnectionCounter(client_entries=1024) as counter:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HELD, "ls-cli-x", host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            addr, cport = json.loads(proc.stdout.readline())
            ip = ipaddress.ip_address(addr)
            if host.startswith("::ffff:"):  # the packet on lo says 127.0.0.1: found as mapped
                assert isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
                ip = ip.ipv4_mapped
            sip = ipaddress.ip_address(host)
            if isinstance(sip, ipaddress.IPv6Address) and sip.ipv4_mapped is not None:
                sip = sip.ipv4_mapped
            got = counter.client_entry((ip, cport), (sip, port), cookie)
            assert got is not None and got.comm == "ls-cli-x"
            assert t0 < got.connected_ns < time.monotonic_ns()  # CLOCK_MONOTONIC, at connect
            assert counter.client_entry((ip, cport), (sip, port), cookie + 1) is None  # netns
            assert counter.client_entry((ip, cport), (sip, port + 1), cookie) is None  # server
            assert counter.client_entry((sip, port), (ip, cport), cookie) is None  # not a client
        finally:
            proc.communicate("")
    with ConnectionCounter() as plain:  # no map asked: none made, no per-connect work for it
        assert plain.clients_fd is None
        assert plain.client_entry((ip, cport), (sip, port), cookie) is None
    srv.close()


@pytest.mark.linux
@pytest.mark.root
@root_only
def test_one_client_port_toward_two_servers_names_each_connection() -> None:
    """Each destination has its own ephemeral port sequence, so one local port is often in use
    toward two servers at once: the map is keyed by the 4-tuple, and each names its own client."""
    import json

    from loopscope.backends.linux.bpf.sockops import netns_cookie_of_current

    lo = ipaddress.IPv4Address("127.0.0.1")
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    ports = [s.getsockname()[1] for s in servers]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    shared = free.getsockname()[1]
    free.close()
    cookie = netns_cookie_of_current()
    assert cookie is not None
    procs = []
    with ConnectionCounter(client_entries=1024) as counter:
        try:
            for name, port in (("ls-first", ports[0]), ("ls-second", ports[1])):
                proc = subprocess.Popen(
                    [sys.executable, "-c", _HELD, name, "127.0.0.1", str(port), str(shared)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                procs.append(proc)
                assert proc.stdout is not None
                assert json.loads(proc.stdout.readline())[1] == shared
            for name, port in (("ls-first", ports[0]), ("ls-second", ports[1])):
                got = counter.client_entry((lo, shared), (lo, port), cookie)
                assert got is not None and got.comm == name
        finally:
            for proc in procs:
                proc.communicate("")
            for s in servers:
                s.close()


@pytest.mark.linux
@pytest.mark.root
@root_only
def test_a_full_map_counts_the_lost_increments() -> None:
    servers = []
    for _ in range(4):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        servers.append(s)
    with ConnectionCounter(max_entries=2) as counter:
        for s in servers:
            for _ in range(3):
                socket.create_connection(s.getsockname()).close()
        time.sleep(0.05)
        counted = sum(r.count for r in counter.read())
        lost = counter.map_full()
    assert lost > 0
    # 4 servers x 3 connects x 2 sides (+ whatever else the host did): nothing vanished silently
    assert counted + lost >= 24
    for s in servers:
        s.close()


@given(
    st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda head, family, tail: head + struct.pack("=II", 3, family) + tail,
            st.binary(min_size=16, max_size=16),
            st.sampled_from([2, 10, 0, 255]),
            st.binary(min_size=KEY.size - 24, max_size=KEY.size - 24),
        ),
    ),
    st.integers(0, 2**64 - 1),
)
@example(b"", 0)  # found by this test: struct.error
def test_fuzz_decode_count_key(key: bytes, count: int) -> None:
    try:
        decode_count_key(key, count)
    except ParseError:
        pass

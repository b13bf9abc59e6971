import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopscope.backends.linux import procfs
from loopscope.backends.linux.procfs import (
    ProcRoot,
    decode_address,
    parse_proc_net_line,
    parse_stat,
)
from loopscope.errors import ParseError
from loopscope.model import Endpoint, Family, NetnsId, Proto, TcpState

FIXTURES = Path(__file__).parents[2] / "fixtures"
NS = NetnsId(4, 1)


def test_decode_address_golden_v4():
    assert decode_address("0100007F:1F90") == Endpoint(ipaddress.IPv4Address("127.0.0.1"), 8080)


def test_decode_address_golden_v6():
    assert decode_address("00000000000000000000000001000000:0016") == Endpoint(
        ipaddress.IPv6Address("::1"), 22
    )
    mapped = decode_address("0000000000000000FFFF00000100007F:0050")
    assert mapped.address == ipaddress.IPv6Address("::ffff:127.0.0.1")


@pytest.mark.parametrize("bad", ["0100007F", "0100007F:1F9", "XYZ:0050", "0100:0050"])
def test_decode_address_rejects(bad):
    with pytest.raises(ParseError):
        decode_address(bad)


def test_parse_stat_comm_with_parens_and_spaces():
    line = "42 (my (odd) app) S 1 40 40 0 -1 4194560 " + "0 " * 12 + "9876 5 6"
    assert parse_stat(line) == ("my (odd) app", 1, 40, 9876)


def test_parse_stat_rejects_short():
    with pytest.raises(ParseError, match="need 22"):
        parse_stat("1 (init) S 0 1")


def test_proc_net_line_listen_uses_accept_queue():
    line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000  1000        0 12345 1 0 100 0 0 10 0"
    rec = parse_proc_net_line(line, proto=Proto.TCP, family=Family.INET, netns=NS)
    assert rec.state is TcpState.LISTEN and rec.accept_queue == 3 and rec.recv_queue_bytes is None
    assert rec.uid == 1000 and rec.inode == 12345 and rec.local.port == 8080


def test_read_proc_net_fixture_matches_netlink_listeners(host1_expected):
    recs = procfs.read_proc_net(netns=NS, root=ProcRoot(str(FIXTURES / "host1" / "proc")))
    ports = {r.local.port for r in recs if r.state is TcpState.LISTEN}
    for key in ("listen_127", "listen_v6_loop", "listen_any4", "listen_any6_dual"):
        assert host1_expected[key] in ports
    udp = [r for r in recs if r.proto is Proto.UDP and r.local.port == host1_expected["udp"]]
    assert udp and udp[0].state is TcpState.UNCONN


def test_scan_owners_on_recorded_tree(host1_expected):
    scan = procfs.scan_socket_owners(ProcRoot(str(FIXTURES / "host1" / "proc")))
    pid = host1_expected["pid"]
    owned = [inode for inode, keys in scan.owners.items() if any(k.pid == pid for k in keys)]
    assert len(owned) >= 10  # 4 listeners, 2 pending, v6 pair, mapped, udp, ...
    assert all(isinstance(keys, tuple) for keys in scan.owners.values())
    info = procfs.read_process(scan.keys[pid], ProcRoot(str(FIXTURES / "host1" / "proc")))
    assert info is not None and info.comm.startswith("python")


def test_scan_owners_vanished_process_is_counted_not_raised(tmp_path):
    (tmp_path / "123").mkdir()  # a pid dir without fd/: exited mid-scan
    scan = procfs.scan_socket_owners(ProcRoot(str(tmp_path)))
    assert scan.vanished_pids == 1 and scan.owners == {}


@given(st.text(max_size=200))
def test_fuzz_proc_net_line(line: str):
    try:
        parse_proc_net_line(line, proto=Proto.TCP, family=Family.INET, netns=NS)
    except ParseError:
        pass


@given(st.text(max_size=200))
def test_fuzz_parse_stat(line: str):
    try:
        parse_stat(line)
    except ParseError:
        pass


@given(
    st.one_of(
        st.text(max_size=50),
        st.builds(
            lambda a, p: f"{a}:{p}",
            st.text("0123456789abcdefABCDEF g", max_size=34),
            st.text("0123456789abcdefABCDEF g", max_size=5),
        ),
    )
)
def test_fuzz_decode_address(text: str) -> None:
    try:
        decode_address(text)
    except ParseError:
        pass

import ipaddress
import socket
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from loopscope.backends.linux import sock_diag
from loopscope.errors import ParseError
from loopscope.model import Family, NetnsId, Proto, TcpState
from loopscope.testing.record import load_transport

FIXTURES = Path(__file__).parents[2] / "fixtures"

NS = NetnsId(4, 1)


def _records():
    return list(
        sock_diag.dump_sockets(
            load_transport(FIXTURES / "host1" / "sock_diag.json"), netns=NS, tcp_info=True
        )
    )


def test_build_request_layout():
    req = sock_diag.build_request(socket.AF_INET6, socket.IPPROTO_TCP, tcp_info=True)
    assert len(req) == 56
    assert (
        req[:8] == bytes([10, 6, 2, 0]) + b"\xff\xff\xff\xff"
    )  # family, proto, ext = 1 << (INFO-1)


def test_replayed_listeners(host1_expected):
    recs = _records()
    listeners = {(r.local.port, r.family): r for r in recs if r.state is TcpState.LISTEN}
    loop4 = listeners[(host1_expected["listen_127"], Family.INET)]
    assert str(loop4.local.address) == "127.0.0.1"
    assert (loop4.accept_queue, loop4.backlog) == (
        2,
        3,
    )  # two connections never accepted, listen(3)
    assert loop4.recv_queue_bytes is None and loop4.inode is not None
    dual = listeners[(host1_expected["listen_any6_dual"], Family.INET6)]
    assert dual.local.address == ipaddress.IPv6Address("::") and dual.v6only is False
    assert listeners[(host1_expected["listen_v6_loop"], Family.INET6)].v6only is True


def test_replayed_connection_details(host1_expected):
    recs = _records()
    server_v6 = [
        r
        for r in recs
        if r.local.port == host1_expected["listen_v6_loop"] and r.state is TcpState.ESTABLISHED
    ]
    assert len(server_v6) == 1
    info = server_v6[0].tcp_info
    assert info is not None and info.bytes_received == host1_expected["sent_bytes"]
    assert server_v6[0].remote.port == host1_expected["v6_client_port"]
    mapped = [r for r in recs if r.local.port == host1_expected["mapped_client_port"]]
    assert mapped and mapped[0].family is Family.INET
    accepted_mapped = [r for r in recs if r.remote.port == host1_expected["mapped_client_port"]]
    assert accepted_mapped[0].local.address == ipaddress.IPv6Address("::ffff:127.0.0.1")


def test_time_wait_and_udp(host1_expected):
    recs = _records()
    tw = [
        r
        for r in recs
        if r.state is TcpState.TIME_WAIT
        and host1_expected["listen_any4"] in (r.local.port, r.remote.port)
    ]
    assert tw and all(r.inode is None and r.uid is None for r in tw)
    udp = [r for r in recs if r.proto is Proto.UDP and r.local.port == host1_expected["udp"]]
    assert udp and udp[0].state is TcpState.UNCONN and udp[0].is_listener


def test_cookie_golden():
    # sockid tail: if=1, cookie[0]=0x11223344, cookie[1]=0x1 -> cookie 0x1_1122_3344
    head = (
        bytes([2, 10, 0, 0])
        + bytes.fromhex("1f90 0000")
        + bytes([127, 0, 0, 1])
        + b"\0" * 12
        + b"\0" * 16
    )
    tail = (
        (1).to_bytes(4, "little") + (0x11223344).to_bytes(4, "little") + (1).to_bytes(4, "little")
    )
    rest = (
        b"\0" * 4
        + (0).to_bytes(4, "little")
        + (128).to_bytes(4, "little")
        + (1000).to_bytes(4, "little")
        + (77).to_bytes(4, "little")
    )
    rec = sock_diag.parse_inet_diag_msg(head + tail + rest, proto=Proto.TCP, netns=NS)
    assert (
        rec.cookie == 0x1_1122_3344
        and rec.local.port == 8080
        and rec.backlog == 128
        and rec.uid == 1000
    )
    assert rec.inode == 77 and rec.interface == 1 and str(rec.local.address) == "127.0.0.1"


def test_short_message_is_parse_error():
    try:
        sock_diag.parse_inet_diag_msg(b"\x02" * 10, proto=Proto.TCP, netns=NS)
    except ParseError as exc:
        assert "too short" in str(exc)
    else:
        raise AssertionError("no ParseError")


@given(st.binary(min_size=0, max_size=200), st.sampled_from([Proto.TCP, Proto.UDP]))
def test_fuzz_inet_diag_msg(data: bytes, proto: Proto):
    try:
        sock_diag.parse_inet_diag_msg(data, proto=proto, netns=NS)
    except ParseError:
        pass


@given(
    st.integers(min_value=2, max_value=10),
    st.integers(0, 255),
    st.binary(min_size=68, max_size=68),
    st.binary(max_size=40),
)
def test_fuzz_valid_header_bad_body(family: int, state: int, body: bytes, attrs: bytes):
    try:
        sock_diag.parse_inet_diag_msg(
            bytes([family, state]) + body[:70] + attrs, proto=Proto.TCP, netns=NS
        )
    except ParseError:
        pass


@given(st.binary(max_size=300))
def test_fuzz_parse_tcp_info(data: bytes) -> None:
    sock_diag.parse_tcp_info(data)  # any length: fields past the end are None

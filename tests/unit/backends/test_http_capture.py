"""Golden values for the classic BPF filter assembler and the HTTP start-line parser."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.backends.linux.http_capture import (
    JEQ,
    LD_W_ABS,
    RET_K,
    assemble_classic,
    build_http_filter,
    parse_packet,
    parse_path_key,
)
from loopscope.errors import LoopscopeError
from loopscope.model.events import HttpKind


def ipv4_tcp(
    src: str, sport: int, dst: str, dport: int, payload: bytes, *, ihl: int = 5, doff: int = 5
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, doff << 4, 0x18, 65535, 0, 0) + b"\0" * (
        4 * (doff - 5)
    )
    total = 4 * ihl + len(tcp) + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        total,
        0,
        0x4000,
        64,
        6,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    ) + b"\0" * (4 * (ihl - 5))
    return ip + tcp + payload


def ipv6_tcp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 8 << 4, 0x18, 65535, 0, 0) + b"\0" * 12
    ip = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(tcp) + len(payload),
        6,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return ip + tcp + payload


def test_request_line_ipv4_with_options_and_query() -> None:
    pkt = ipv4_tcp(
        "127.0.0.1",
        53110,
        "127.0.0.1",
        8080,
        b"GET /a/b?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        ihl=6,
        doff=8,
    )
    ev = parse_packet(pkt, at_ns=7, ports=frozenset({8080}))
    assert ev is not None and ev.kind is HttpKind.REQUEST
    assert (ev.method, ev.path, str(ev.client), str(ev.server), ev.at_ns) == (
        "GET",
        "/a/b",
        "127.0.0.1:53110",
        "127.0.0.1:8080",
        7,
    )


def test_status_line_ipv6_maps_client_and_server() -> None:
    pkt = ipv6_tcp("::1", 8080, "::1", 53110, b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    ev = parse_packet(pkt, at_ns=1, ports=frozenset({8080}))
    assert ev is not None and ev.kind is HttpKind.RESPONSE and ev.status == 503
    assert (str(ev.client), str(ev.server)) == ("[::1]:53110", "[::1]:8080")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x16\x03\x01\x02\x00",  # TLS ClientHello: connection level only
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 preface
        b"continuation of a body",
        b"GET /x\r\n",  # HTTP/0.9 style, no version
    ],
)
def test_non_http1_payloads_are_ignored(payload: bytes) -> None:
    assert (
        parse_packet(
            ipv4_tcp("127.0.0.1", 5, "127.0.0.1", 8080, payload), at_ns=0, ports=frozenset({8080})
        )
        is None
    )


def test_request_to_an_unwatched_port_is_ignored() -> None:
    pkt = ipv4_tcp("127.0.0.1", 5, "127.0.0.1", 9999, b"GET / HTTP/1.1\r\n\r\n")
    assert parse_packet(pkt, at_ns=0, ports=frozenset({8080})) is None


def test_classic_encoding_golden() -> None:
    code = assemble_classic(
        [
            (LD_W_ABS, 0, 0, -0x1000 + 4),
            (JEQ, "drop", 0, 4),
            (RET_K, 0, 0, 512),
            "drop",
            (RET_K, 0, 0, 0),
        ]
    )
    assert code.hex() == "2000000004f0ffff150001000400000006000000000200000600000000000000"


@pytest.mark.parametrize(("nports", "port_tests"), [(1, 4), (40, 160), (41, 0), (500, 0)])
def test_http_filter_jumps_are_forward_and_in_range(nports: int, port_tests: int) -> None:
    ports = list(range(8000, 8000 + nports))
    prog = build_http_filter(ports)
    assert (
        sum(1 for i in prog if not isinstance(i, str) and i[0] == JEQ and i[3] in ports)
        == port_tests
    )
    code = assemble_classic(prog)
    n = len(code) // 8
    for k in range(n):
        op, jt, jf, _ = struct.unpack_from("=HBBI", code, 8 * k)
        if op & 0x07 == 0x05 and op != 0x05:  # conditional jumps
            assert k + 1 + jt < n and k + 1 + jf < n
    assert struct.unpack_from("=HBBI", code, 8 * (n - 1)) == (RET_K, 0, 0, 0)
    with pytest.raises(ValueError):
        assemble_classic([(JEQ, "far", 0, 1), *[(RET_K, 0, 0, 0)] * 256, "far", (RET_K, 0, 0, 0)])


def _tcp_packets() -> st.SearchStrategy[bytes]:
    """Packets whose IP and TCP headers are plausible enough to reach the payload parser."""
    return st.one_of(
        st.binary(max_size=120),
        st.builds(
            lambda ihl, doff, ports, payload, v6: (
                ipv4_tcp("127.0.0.1", ports[0], "127.0.0.1", ports[1], payload, ihl=ihl, doff=doff)
                if not v6
                else bytes([0x60])
                + bytes(39)
                + struct.pack("!HH", *ports)
                + bytes(8)
                + bytes([doff << 4])
                + bytes(7)
                + payload
            ),
            st.integers(5, 15),
            st.integers(0, 15),
            st.tuples(st.sampled_from([8080, 53110, 1]), st.sampled_from([8080, 53110, 1])),
            st.one_of(
                st.binary(max_size=80),
                st.builds(
                    lambda head, tail: head + tail,
                    st.sampled_from(
                        [b"GET ", b"HTTP/1.1 ", b"HTTP/1.", b"POST /", b"GET / HTTP/1."]
                    ),
                    st.binary(max_size=60),
                ),
            ),
            st.booleans(),
        ),
    )


@given(_tcp_packets())
@example(b"\x45" + bytes(19))  # ihl 5, no TCP header behind it
def test_fuzz_parse_packet(data: bytes) -> None:
    try:
        parse_packet(data, at_ns=1, ports=frozenset({8080}))
    except LoopscopeError:
        pass


@given(st.text(max_size=120))
def test_fuzz_parse_path_key(target: str) -> None:
    """Any request target from the wire gives a short key that starts with '/' or is kept as is."""
    key = parse_path_key(target)
    assert isinstance(key, str) and len(key) <= max(len(target), 200)

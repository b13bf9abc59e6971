"""Destroy multicast decoding: recorded datagrams decode to their 4-tuples; any bytes give CloseEvents or
a ParseError."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.backends.linux.netlink import pack_message
from loopscope.backends.linux.sock_diag import SOCK_DIAG_BY_FAMILY
from loopscope.backends.linux.sock_diag_destroy import (
    parse_destroy_datagram,
    parse_destroy_message,
)
from loopscope.errors import ParseError
from loopscope.model import NetnsId

NS = NetnsId(4, 4026531840)
FIXTURE = Path(__file__).parents[1] / "analysis" / "watch" / "fixtures" / "destroy.json"
INET_DIAG_INFO = 2


def test_recorded_datagrams_decode_to_both_ends_of_each_connection() -> None:
    rec = json.loads(FIXTURE.read_text())
    closes = [
        e
        for g in rec["datagrams"]
        for e in parse_destroy_datagram(bytes.fromhex(g), netns=NS, at_ns=7)
    ]
    port = rec["server_port"]
    assert sorted(e.remote.port for e in closes if e.local.port == port) == sorted(
        c["client_port"] for c in rec["cases"]
    )
    assert all(e.at_ns == 7 and e.netns == NS for e in closes)


def _diag_msg(family: int, attrs: list[tuple[int, bytes]], head: bytes) -> bytes:
    body = bytes([family]) + head[:71].ljust(71, b"\0")
    for kind, payload in attrs:
        length = 4 + len(payload)
        body += struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)
    return body


_MESSAGES = st.builds(
    _diag_msg,
    st.sampled_from([socket.AF_INET, socket.AF_INET6, 0, 255]),
    st.lists(
        st.tuples(
            st.sampled_from([INET_DIAG_INFO, 1, 0x8002]),
            st.one_of(st.binary(max_size=40), st.binary(min_size=200, max_size=240)),
        ),
        max_size=3,
    ),
    st.binary(max_size=71),
)


@given(st.one_of(st.binary(max_size=120), _MESSAGES), st.integers(0, 8))
@example(bytes([socket.AF_INET]) + bytes(71) + struct.pack("=HH", 3, 2), 0)  # attribute length 3
def test_fuzz_parse_destroy_message(payload: bytes, offset: int) -> None:
    try:
        parse_destroy_message(payload, netns=NS, at_ns=1, offset=min(offset, len(payload)))
    except ParseError:
        pass


_DATAGRAMS = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda msgs: b"".join(pack_message(kind, 0, 0, body) for kind, body in msgs),
        st.lists(st.tuples(st.sampled_from([SOCK_DIAG_BY_FAMILY, 3, 2]), _MESSAGES), max_size=3),
    ),
    st.builds(  # a frame length that lies
        lambda length, body: struct.pack("=IHHII", length, SOCK_DIAG_BY_FAMILY, 0, 0, 0) + body,
        st.integers(0, 400),
        st.binary(max_size=120),
    ),
)


@given(_DATAGRAMS)
def test_fuzz_parse_destroy_datagram(data: bytes) -> None:
    try:
        parse_destroy_datagram(data, netns=NS, at_ns=1)
    except ParseError:
        pass

"""RTM_NEWROUTE decoding: a golden local-table route, and any bytes give a route, None or a ParseError."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.backends.linux.routes import RTA_DST, RTA_OIF, RTA_PREFSRC, RTA_TABLE, parse_route
from loopscope.errors import ParseError


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _rtmsg(family: int, dst_len: int, table: int, rtype: int) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 2, 254, rtype, 0)


def test_parse_route_local_table_golden() -> None:
    payload = (
        _rtmsg(socket.AF_INET, 8, 255, 2)
        + _attr(RTA_DST, bytes.fromhex("7f000000"))
        + _attr(RTA_OIF, struct.pack("=i", 1))
        + _attr(RTA_PREFSRC, bytes.fromhex("7f000001"))
    )
    route = parse_route(payload, {1: "lo"})
    assert route is not None
    assert (route.family, route.table, route.type, route.dst, route.dev) == (
        4,
        255,
        "local",
        "127.0.0.0/8",
        "lo",
    )
    assert route.prefsrc == ipaddress.IPv4Address("127.0.0.1") and route.gateway is None


def test_parse_route_table_attribute_wins_and_other_families_are_none() -> None:
    payload = _rtmsg(socket.AF_INET6, 0, 252, 1) + _attr(RTA_TABLE, struct.pack("=I", 1000))
    route = parse_route(payload, {})
    assert route is not None and route.table == 1000 and route.dst == "default"
    assert parse_route(_rtmsg(socket.AF_PACKET, 0, 0, 0), {}) is None


_ROUTES = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda head, attrs: head + b"".join(_attr(k, v) for k, v in attrs),
        st.builds(
            _rtmsg,
            st.sampled_from([socket.AF_INET, socket.AF_INET6]),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 255),
        ),
        st.lists(
            st.tuples(
                st.sampled_from([RTA_DST, RTA_OIF, RTA_PREFSRC, RTA_TABLE, 5, 99]),
                st.one_of(st.binary(max_size=20), st.sampled_from([bytes(4), bytes(16)])),
            ),
            max_size=5,
        ),
    ),
)


@given(_ROUTES)
@example(
    _rtmsg(socket.AF_INET, 33, 254, 1) + _attr(RTA_DST, bytes(4))
)  # prefix longer than the address
def test_fuzz_parse_route(payload: bytes) -> None:
    try:
        parse_route(payload, {1: "lo"})
    except ParseError:
        pass

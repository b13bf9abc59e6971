import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopscope.backends.linux.netlink import (
    NLMSG_DONE,
    NLMSG_ERROR,
    ReplayTransport,
    dump,
    pack_message,
    parse_attributes,
    parse_messages,
)
from loopscope.errors import NetlinkError, ParseError


def test_pack_message_golden():
    assert pack_message(20, 0x301, 1, b"").hex() == "10000000140001030100000000000000"
    # payload of 5 bytes is padded to 8, nlmsg_len says 21
    msg = pack_message(20, 1, 7, b"abcde")
    assert len(msg) == 24 and struct.unpack_from("=I", msg)[0] == 21


def test_parse_messages_roundtrip_and_padding():
    data = pack_message(100, 2, 9, b"xyz") + pack_message(NLMSG_DONE, 2, 9, b"\0\0\0\0")
    msgs = list(parse_messages(data))
    assert [(m.type, m.seq, m.payload) for m in msgs] == [
        (100, 9, b"xyz"),
        (NLMSG_DONE, 9, b"\0\0\0\0"),
    ]


def test_parse_messages_rejects_length_past_end():
    bad = struct.pack("=IHHII", 64, 20, 0, 1, 0) + b"\0" * 8
    with pytest.raises(ParseError, match="bad nlmsg_len 64"):
        list(parse_messages(bad))


def test_parse_attributes_golden_masks_flags():
    # len 5, type 10|NLA_F_NESTED (0x8000), payload 0x06, padded to 8
    raw = bytes.fromhex("05000a8006000000")
    assert parse_attributes(raw) == {10: b"\x06"}


def test_parse_attributes_rejects_short_length():
    with pytest.raises(ParseError, match="bad attribute length 2"):
        parse_attributes(bytes.fromhex("02000100"))


def test_dump_maps_nlmsg_error_to_errno():
    err = struct.pack("=i", -2) + b"\0" * 16
    transport = ReplayTransport([pack_message(NLMSG_ERROR, 0, 1, err)])
    with pytest.raises(NetlinkError) as info:
        list(dump(transport, 20, b"", seq=1, what="udp dump"))
    assert info.value.errno == 2 and "udp dump" in str(info.value)
    assert transport.sent and struct.unpack_from("=H", transport.sent[0], 4)[0] == 20


def test_dump_truncated_recording_is_a_parse_error():
    transport = ReplayTransport([pack_message(20, 2, 1, b"abcd")])
    with pytest.raises(ParseError, match="recording ended"):
        list(dump(transport, 20, b"", seq=1))


@given(st.binary(max_size=300))
def test_parse_messages_never_crashes(data: bytes):
    try:
        for msg in parse_messages(data):
            parse_attributes(msg.payload)
    except ParseError:
        pass


@given(st.binary(max_size=200), st.integers(0, 24))
def test_fuzz_parse_attributes(data: bytes, offset: int) -> None:
    try:
        attrs = parse_attributes(data, offset)
    except ParseError:
        return
    assert all(0 <= kind < 0x4000 for kind in attrs)

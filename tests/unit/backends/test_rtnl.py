import ipaddress
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from loopscope.backends.linux import rtnl
from loopscope.errors import ParseError
from loopscope.testing.record import load_transport

FIXTURES = Path(__file__).parents[2] / "fixtures"


def test_replayed_links_and_addresses():
    transport = load_transport(FIXTURES / "host1" / "rtnl.json")
    links = rtnl.dump_links(transport)
    lo = next(link for link in links if link.name == "lo")
    assert lo.up and lo.loopback and lo.mtu == 65536 and lo.index == 1
    addrs = rtnl.dump_addresses(transport, {link.index: link.name for link in links})
    lo_addrs = {(a.address, a.prefixlen) for a in addrs if a.interface == "lo"}
    assert (ipaddress.IPv4Address("127.0.0.1"), 8) in lo_addrs
    assert (ipaddress.IPv6Address("::1"), 128) in lo_addrs


def test_parse_link_flags_golden():
    # ifinfomsg: family 0, type 772, index 1, flags UP|LOOPBACK|RUNNING|LOWER_UP, change 0; IFLA_IFNAME "lo"
    payload = bytes([0, 0]) + (772).to_bytes(2, "little") + (1).to_bytes(4, "little")
    payload += (0x10049).to_bytes(4, "little") + b"\0" * 4 + bytes.fromhex("0700 0300") + b"lo\0\0"
    link = rtnl.parse_link(payload)
    assert (link.name, link.up, link.running, link.loopback, link.mtu) == (
        "lo",
        True,
        True,
        True,
        None,
    )
    down = rtnl.parse_link(payload[:8] + (0x8).to_bytes(4, "little") + payload[12:])
    assert not down.up and down.loopback


@given(st.binary(max_size=80))
def test_fuzz_parse_address(data: bytes):
    try:
        rtnl.parse_address(data, {})
        rtnl.parse_link(data)
    except ParseError:
        pass


@given(st.binary(max_size=120))
def test_fuzz_parse_link(data: bytes) -> None:
    try:
        rtnl.parse_link(data)
    except ParseError:
        pass

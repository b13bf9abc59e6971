"""Address scope: loopback ranges, IPv4-mapped addresses, wildcards and host-owned addresses."""

from __future__ import annotations

import ipaddress

import pytest

from loopscope.analysis.scope import (
    classify_address,
    host_address_set,
    is_loopback,
    is_wildcard,
    unmap,
)
from loopscope.model import InterfaceAddress, Scope

ip = ipaddress.ip_address
HOST = frozenset({ip("192.0.2.2"), ip("2001:db8::2")})


@pytest.mark.parametrize(
    ("addr", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.2", True),
        ("128.0.0.1", False),
        ("::2", False),
        ("::ffff:192.0.2.2", False),
        ("0.0.0.0", False),
    ],
)
def test_is_loopback(addr: str, loopback: bool) -> None:
    assert is_loopback(ip(addr)) is loopback


def test_unmap_and_wildcard() -> None:
    assert unmap(ip("::ffff:127.0.0.1")) == ip("127.0.0.1")
    assert unmap(ip("::1")) == ip("::1")
    assert is_wildcard(ip("0.0.0.0")) and is_wildcard(ip("::"))
    assert not is_wildcard(ip("::ffff:0.0.0.1"))


@pytest.mark.parametrize(
    ("addr", "scope"),
    [
        ("0.0.0.0", Scope.WILDCARD),
        ("::", Scope.WILDCARD),
        ("127.0.0.53", Scope.LOOPBACK),
        ("::ffff:127.0.0.1", Scope.LOOPBACK),
        ("192.0.2.2", Scope.OWN_ADDRESS),
        ("::ffff:192.0.2.2", Scope.OWN_ADDRESS),
        ("2001:db8::2", Scope.OWN_ADDRESS),
        ("198.51.100.7", Scope.OTHER),
    ],
)
def test_classify_address(addr: str, scope: Scope) -> None:
    assert classify_address(ip(addr), HOST) is scope


def test_host_address_set_takes_records_and_plain_addresses() -> None:
    records = [
        InterfaceAddress(interface="eth0", index=2, address=ip("::ffff:192.0.2.9"), prefixlen=24),
        ip("2001:db8::2"),
        "not an address",
    ]
    assert host_address_set(records) == frozenset({ip("192.0.2.9"), ip("2001:db8::2")})

"""Candidate address lists of a probe target (localhost resolution is real getaddrinfo)."""

from __future__ import annotations

import ipaddress

import pytest

from loopscope.analysis.probe.target import parse_target
from loopscope.errors import UsageError
from loopscope.model import InterfaceAddress
from loopscope.probes.run import choose_mode
from loopscope.probes.target import candidates_for, local_candidates


def test_choose_mode() -> None:
    assert choose_mode(parse_target(":6379")) == "tcp"
    assert choose_mode(parse_target(":6379/")) == "http"
    assert choose_mode(parse_target(":443")) == "https"
    assert choose_mode(parse_target(":8080")) == "http"
    assert choose_mode(parse_target("tcp://:8080")) == "tcp"


def _ia(name: str, addr: str, plen: int) -> InterfaceAddress:
    return InterfaceAddress(
        interface=name, index=2, address=ipaddress.ip_address(addr), prefixlen=plen
    )


def test_local_candidates_order_and_merge() -> None:
    cands = local_candidates(
        80,
        [
            _ia("lo", "127.0.0.1", 8),
            _ia("eth0", "192.0.2.2", 24),
            _ia("eth0", "fe80::1", 64),
            _ia("eth0", "fd00::2", 64),
        ],
    )
    addrs = [c.address for c in cands]
    assert addrs[:4] == ["127.0.0.1", "::1", "192.0.2.2", "fd00::2"]
    assert "fe80::1" not in addrs
    assert cands[2].label == "host eth0"
    assert any("localhost #" in c.label for c in cands)  # merged into the literal rows
    assert len(addrs) == len(set(addrs))


def test_candidates_for_literal_and_name() -> None:
    assert [c.address for c in candidates_for(parse_target("127.0.0.2:80"))] == ["127.0.0.2"]
    named = candidates_for(parse_target("localhost:80"))
    assert named and all(c.label.startswith("localhost #") for c in named)
    with pytest.raises(UsageError):
        candidates_for(parse_target("no-such-host.invalid:80"))

"""getaddrinfo through loopscope.backends.resolve: address literals resolve without any resolver file,
an invalid name fails with a ProbeError in phase ``resolve``."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from loopscope.backends.resolve import distinct_addresses, resolve_stream
from loopscope.errors import ProbeError


def test_literals_resolve_to_themselves() -> None:
    assert resolve_stream("127.0.0.1", 80) == [(4, "127.0.0.1")]
    assert resolve_stream("::1", 80) == [(6, "::1")]


def test_family_filter() -> None:
    with pytest.raises(ProbeError):
        resolve_stream("127.0.0.1", 80, family=socket.AF_INET6)
    assert resolve_stream("127.0.0.1", None, family=socket.AF_INET) == [(4, "127.0.0.1")]


def test_unresolvable_name_is_a_probe_error() -> None:
    with pytest.raises(ProbeError) as info:
        resolve_stream("no-such-host.invalid", 80)
    assert info.value.phase == "resolve" and info.value.target == "no-such-host.invalid"
    assert info.value.reason  # gai_strerror text, e.g. "Name or service not known"
    assert isinstance(info.value.__cause__, socket.gaierror)


def test_distinct_addresses_keeps_first_occurrence_and_drops_scope() -> None:
    answers = [(6, "::1"), (4, "127.0.0.1"), (4, "127.0.0.1"), (6, "fe80::1%lo")]
    assert distinct_addresses(answers) == (
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("fe80::1"),
    )

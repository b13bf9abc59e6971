"""localhost resolution checks and the family mismatch against the listener table (recorded facts)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from loopscope.analysis.doctor.facts import HostsEntry, ResolutionFacts
from loopscope.analysis.doctor.resolution import (
    check_listener_families,
    check_localhost,
    check_localhost_mismatch,
    listener_families,
    order_from_hosts,
    parse_hosts,
)
from loopscope.analysis.doctor.verdict import Verdict

A = ipaddress.ip_address
HOSTS = "127.0.0.1 localhost  # v4\n\n# comment\n::1 localhost ip6-localhost\n  192.0.2.2\tvm vm.example\nbad\n"


def test_parse_hosts_golden():
    assert parse_hosts(HOSTS) == [
        HostsEntry(address="127.0.0.1", names=("localhost",), lineno=1),
        HostsEntry(address="::1", names=("localhost", "ip6-localhost"), lineno=4),
        HostsEntry(address="192.0.2.2", names=("vm", "vm.example"), lineno=5),
    ]


def test_localhost_ok_and_failures():
    entries = tuple(e for e in parse_hosts(HOSTS) if "localhost" in e.names)
    ok = check_localhost(
        ResolutionFacts(hosts_entries=entries, order=(A("::1"), A("127.0.0.1")), duration_us=1500)
    )
    assert (
        ok.verdict is Verdict.OK
        and ok.evidence
        == "localhost -> ::1, 127.0.0.1 (getaddrinfo in 1.5 ms); /etc/hosts: line 1 127.0.0.1, line 4 ::1"
    )
    none = check_localhost(ResolutionFacts(error="Name or service not known"))
    assert none.verdict is Verdict.FAIL and none.code == "LOCALHOST_UNRESOLVED"
    remote = check_localhost(ResolutionFacts(hosts_entries=entries, order=(A("192.0.2.2"),)))
    assert (
        remote.verdict is Verdict.FAIL
        and remote.code == "LOCALHOST_NOT_LOOPBACK"
        and "192.0.2.2" in remote.remedy
    )
    synthesised = check_localhost(ResolutionFacts(order=(A("127.0.0.1"),)))
    assert synthesised.verdict is Verdict.WARN and synthesised.code == "LOCALHOST_NOT_IN_HOSTS"


def test_listener_families_by_bind_address(mk_listener):
    socks = [
        mk_listener("127.0.0.1", 8080),
        mk_listener("::1", 8081),
        mk_listener("::", 8082, v6only=False),
        mk_listener("::", 8083, v6only=True),
        mk_listener("0.0.0.0", 8084),
        mk_listener("192.0.2.2", 8085),
        mk_listener("::ffff:127.0.0.1", 8086),
    ]
    assert listener_families(socks) == {
        8080: {4},
        8081: {6},
        8082: {4, 6},
        8083: {6},
        8084: {4},
        8086: {4},
    }


V6_FIRST = ResolutionFacts(order=(A("::1"), A("127.0.0.1")))
V6_ONLY = ResolutionFacts(order=(A("::1"),))
V4_ONLY = ResolutionFacts(order=(A("127.0.0.1"),))


def test_mismatch_ok_when_listener_accepts_first_family(mk_listener):
    socks = [mk_listener("::", 8080, v6only=False), mk_listener("::1", 9090)]
    ok = check_localhost_mismatch(V6_FIRST, socks)
    assert ok.verdict is Verdict.OK and ok.data["other_family_only"] == []
    assert check_listener_families(V6_FIRST, socks) == []


def test_mismatch_v6_first_listener_v4_only_warns_with_fallback(mk_listener):
    socks = [mk_listener("127.0.0.1", 8080), mk_listener("::1", 9090)]
    summary = check_localhost_mismatch(V6_FIRST, socks)
    assert summary.verdict is Verdict.OK and summary.data["other_family_only"] == [8080]
    assert "1 of 2 loopback TCP listener ports accept it" in summary.evidence
    (warn,) = check_listener_families(V6_FIRST, socks, owners={8080: "node"})
    assert warn.verdict is Verdict.WARN and warn.code == "LOCALHOST_V6_FIRST_LISTENER_V4_ONLY"
    assert warn.id == "resolve.mismatch.8080" and warn.service_level
    assert warn.subject == "node port 8080/tcp"
    assert "port 8080 (node) listens on 127.0.0.1 only" in warn.evidence


def test_mismatch_fails_the_service_when_the_other_family_is_absent(mk_listener):
    """A service bound to one family while localhost resolves to the other only: the service's check
    fails (its own subject); the stack's summary check stays ok."""
    socks = [mk_listener("127.0.0.1", 8080)]
    assert check_localhost_mismatch(V6_ONLY, socks).verdict is Verdict.OK
    (fail,) = check_listener_families(V6_ONLY, socks)
    assert fail.verdict is Verdict.FAIL and "every localhost client fails" in fail.evidence
    assert fail.subject == "owner unknown port 8080/tcp" and fail.service_level
    assert "add '127.0.0.1 localhost'" in fail.remedy
    (reverse,) = check_listener_families(V4_ONLY, [mk_listener("::1", 8080)])
    assert reverse.verdict is Verdict.FAIL and reverse.code == "LOCALHOST_V4_FIRST_LISTENER_V6_ONLY"


def test_mismatch_skips_own_ports_and_udp_and_unresolved(mk_listener):
    from loopscope.model import Proto

    v4 = [mk_listener("127.0.0.1", 8080)]
    assert check_listener_families(V6_ONLY, v4, skip_ports=(8080,)) == []
    assert check_localhost_mismatch(V6_ONLY, v4, skip_ports=(8080,)).verdict is Verdict.OK
    udp = [mk_listener("127.0.0.1", 53, proto=Proto.UDP)]
    assert check_listener_families(V6_ONLY, udp) == []
    assert check_localhost_mismatch(replace(V6_ONLY, order=()), []).verdict is Verdict.SKIPPED
    assert check_listener_families(replace(V6_ONLY, order=()), v4) == []


def test_order_from_hosts_follows_rfc6724_precedence():
    entries = parse_hosts(
        "127.0.0.1 localhost\n::1 localhost\nnot-an-ip localhost\n127.0.0.1 localhost\n"
    )
    assert order_from_hosts(entries) == (A("::1"), A("127.0.0.1"))
    assert order_from_hosts(parse_hosts("127.0.0.1 localhost\n")) == (A("127.0.0.1"),)
    assert order_from_hosts(parse_hosts("fd00::2 x\n127.0.0.1 x\n::1 x\n")) == (
        A("::1"),
        A("fd00::2"),
        A("127.0.0.1"),
    )


@given(st.text(max_size=300))
def test_fuzz_parse_hosts(text: str) -> None:
    """A hosts file is user-edited text: any content gives entries, never an exception."""
    for entry in parse_hosts(text):
        assert isinstance(entry, HostsEntry)

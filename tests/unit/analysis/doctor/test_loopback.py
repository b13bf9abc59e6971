"""Rung 1 loopback checks: one passing and one failing case each, on recorded facts."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from loopscope.analysis.doctor.facts import EchoResult, IcmpResult, RouteEntry, RouteLookup, Sysctls
from loopscope.analysis.doctor.loopback import (
    check_echo,
    check_icmp,
    check_lo_ipv4,
    check_lo_ipv6,
    check_lo_link,
    check_lo_mtu,
    check_lo_routes,
    check_route_localnet,
    ip_command,
    ipv6_disabled_by,
    summarize_rtts,
)
from loopscope.analysis.doctor.verdict import Verdict
from loopscope.model import InterfaceAddress, LinkInfo, Severity

A = ipaddress.ip_address


def test_ip_command_per_namespace_kind():
    assert ip_command("host", None) == "ip"
    assert ip_command("blue", "blue") == "ip -n blue"
    assert ip_command("pid 42", None) == "nsenter -t 42 -n ip"


def test_lo_link(healthy, lo_down):
    assert check_lo_link(healthy.loopback).verdict is Verdict.OK
    down = check_lo_link(lo_down.loopback, "ip -n blue")
    assert (down.verdict, down.code, down.remedy) == (
        Verdict.FAIL,
        "LO_DOWN",
        "ip -n blue link set lo up",
    )
    assert "DOWN" in down.evidence and down.severity is Severity.CRITICAL
    missing = check_lo_link(replace(healthy.loopback, links=healthy.loopback.links[1:]))
    assert missing.code == "LO_MISSING" and missing.verdict is Verdict.FAIL


def test_lo_ipv4(healthy, lo_down):
    assert check_lo_ipv4(healthy.loopback).verdict is Verdict.OK
    bad = check_lo_ipv4(lo_down.loopback, "ip -n blue")
    assert bad.verdict is Verdict.FAIL and bad.remedy == "ip -n blue addr add 127.0.0.1/8 dev lo"
    narrow = replace(
        healthy.loopback,
        addresses=(
            InterfaceAddress(interface="lo", index=1, address=A("127.0.0.1"), prefixlen=32),
        ),
    )
    assert check_lo_ipv4(narrow).verdict is Verdict.WARN


def test_lo_ipv6_and_the_switch_that_disables_it(healthy, lo_down):
    assert check_lo_ipv6(healthy.loopback, None).verdict is Verdict.OK
    assert check_lo_ipv6(lo_down.loopback, None).verdict is Verdict.FAIL
    by = ipv6_disabled_by(lo_down.loopback, True, False)
    assert by == "net.ipv6.conf.all.disable_ipv6=1"
    off = check_lo_ipv6(lo_down.loopback, by)
    assert off.verdict is Verdict.OK and "net.ipv6.conf.all.disable_ipv6=1" in off.evidence
    assert ipv6_disabled_by(lo_down.loopback, False, True) == "net.ipv6.conf.lo.disable_ipv6=1"
    no_module = replace(lo_down.loopback, sysctls=Sysctls(ipv6_module=False))
    assert "ipv6.disable=1" in (ipv6_disabled_by(no_module, None, None) or "")


@pytest.mark.parametrize(
    ("mtu", "v6", "verdict"),
    [
        (65536, True, Verdict.OK),
        (16384, True, Verdict.WARN),
        (1000, True, Verdict.FAIL),
        (1000, False, Verdict.WARN),
        (60, False, Verdict.FAIL),
    ],
)
def test_lo_mtu(healthy, mtu, v6, verdict):
    lf = replace(healthy.loopback, links=(replace(healthy.loopback.links[0], mtu=mtu),))
    assert check_lo_mtu(lf, v6).verdict is verdict


def test_lo_routes(healthy, lo_down):
    ok = check_lo_routes(healthy.loopback, True)
    assert ok.verdict is Verdict.OK and "route get 127.0.0.2: local dev lo" in ok.evidence
    bad = check_lo_routes(lo_down.loopback, True, "ip -n blue")
    assert bad.verdict is Verdict.FAIL and "Network is unreachable" in bad.evidence
    assert "ip -n blue link set lo up" in bad.remedy


def test_lo_routes_catches_127_sent_elsewhere_by_a_rule(healthy):
    lookups = (RouteLookup(address=A("127.0.0.1"), type="unicast", dev="eth0"),)
    bad = check_lo_routes(replace(healthy.loopback, lookups=lookups), False)
    assert bad.verdict is Verdict.FAIL and "routed as unicast via eth0" in bad.evidence


def test_icmp(healthy, lo_down):
    ok = check_icmp(healthy.loopback.icmp[0])
    assert (
        ok.verdict is Verdict.OK
        and "3/3 replies" in ok.evidence
        and ok.data["rtts_us"] == [50.7, 113.9, 40.2]
    )
    assert check_icmp(lo_down.loopback.icmp[0]).verdict is Verdict.FAIL
    lossy = IcmpResult(
        target=A("::1"),
        method="dgram",
        sent=3,
        received=2,
        rtts_us=(10.0, 11.0),
        error="no echo reply within 300 ms",
    )
    assert check_icmp(lossy).verdict is Verdict.WARN
    skipped = check_icmp(
        IcmpResult(target=A("::1"), method="none", skipped_reason="not root and ...")
    )
    assert skipped.verdict is Verdict.SKIPPED and skipped.evidence == "not root and ..."


def test_echo(healthy, lo_down):
    ok = check_echo(healthy.loopback.echoes[0])
    assert (
        ok.verdict is Verdict.OK
        and ok.data["rtt_p50_us"] == 24.6
        and "connect 61 us" in ok.evidence
    )
    fail = check_echo(lo_down.loopback.echoes[0])
    assert (
        fail.verdict is Verdict.FAIL
        and fail.code == "TCP_ECHO_FAILED"
        and "ENETUNREACH" in fail.evidence
    )
    bind = check_echo(lo_down.loopback.echoes[2])
    assert bind.verdict is Verdict.FAIL and bind.evidence.startswith("bind ::1 port 0")
    slow = check_echo(
        EchoResult(proto="udp", address=A("127.0.0.2"), port=1, rtts_us=(9000.0, 8000.0, 7000.0))
    )
    assert slow.verdict is Verdict.WARN and slow.code == "LOOPBACK_SLOW"
    skip = check_echo(EchoResult(proto="tcp", address=A("::1"), skipped_reason="IPv6 is disabled"))
    assert skip.verdict is Verdict.SKIPPED


def test_rtt_summary():
    assert summarize_rtts((3.0, 1.0, 2.0)) == "p50 2.0 us, max 3.0 us over 3"
    assert summarize_rtts(()) == ""


def test_route_localnet(healthy):
    ok = check_route_localnet(healthy.loopback)
    assert (
        ok.verdict is Verdict.OK and "martian packets dropped since boot: 0 source" in ok.evidence
    )
    on = replace(healthy.loopback, sysctls=Sysctls(route_localnet={"all": False, "eth0": True}))
    warn = check_route_localnet(on)
    assert warn.verdict is Verdict.WARN and "net.ipv4.conf.eth0.route_localnet=1" in warn.evidence
    stray_addr = (
        *healthy.loopback.addresses,
        InterfaceAddress(interface="eth0", index=2, address=A("127.0.0.5"), prefixlen=32),
    )
    fail = check_route_localnet(replace(healthy.loopback, addresses=stray_addr))
    assert fail.verdict is Verdict.FAIL and "127.0.0.5/32 on eth0" in fail.evidence
    stray_route = (
        *healthy.loopback.main_routes,
        RouteEntry(family=4, table=254, type="unicast", dst="127.1.0.0/16", dev="eth0"),
    )
    assert (
        check_route_localnet(replace(healthy.loopback, main_routes=stray_route)).verdict
        is Verdict.FAIL
    )


def test_lo_found_by_flag_not_only_by_name(healthy):
    renamed = (LinkInfo(name="loop0", index=1, up=True, running=True, loopback=True, mtu=65536),)
    assert check_lo_link(replace(healthy.loopback, links=renamed)).verdict is Verdict.OK


def test_icmp_ignored_by_sysctl_is_a_warning(lo_down):
    silent = IcmpResult(
        target=A("127.0.0.1"), method="raw", sent=3, received=0, error="no echo reply within 300 ms"
    )
    assert check_icmp(silent, Sysctls()).verdict is Verdict.FAIL
    res = check_icmp(silent, Sysctls(icmp_echo_ignore_v4=True))
    assert res.verdict is Verdict.WARN and "net.ipv4.icmp_echo_ignore_all=1" in res.evidence
    assert res.remedy.endswith("sysctl -w net.ipv4.icmp_echo_ignore_all=0")
    # lo down: nothing was sent, the sysctl does not explain it
    assert (
        check_icmp(lo_down.loopback.icmp[0], Sysctls(icmp_echo_ignore_v4=True)).verdict
        is Verdict.FAIL
    )

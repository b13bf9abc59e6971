"""Firewall check (on the recorded rulesets of tests/unit/analysis/firewall/fixtures), rung 2 and rung 3 checks."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

from loopscope.analysis.doctor.facts import EchoResult, ExternalFacts, FirewallFacts, RouteEntry
from loopscope.analysis.doctor.network import (
    check_default_route,
    check_external_connect,
    check_external_dns,
    check_firewall,
    check_host_addresses,
    check_host_echoes,
    check_interfaces,
    parse_firewall,
)
from loopscope.analysis.doctor.verdict import Verdict
from loopscope.model import LinkInfo

A = ipaddress.ip_address
FIX = Path(__file__).parents[1] / "firewall" / "fixtures"
EMPTY_NFT = '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}'
POLICY_DROP = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -j ACCEPT
COMMIT
"""


def test_firewall_clean_ruleset_is_ok():
    ok = check_firewall(FirewallFacts(nft_json=EMPTY_NFT, iptables_save="", ip6tables_save=""))
    assert ok.verdict is Verdict.OK and "none drops or rejects loopback traffic" in ok.evidence


def test_firewall_recorded_rules_block_a_real_listener():
    facts = FirewallFacts(nft_json=(FIX / "nft_ruleset.json").read_text())
    fail = check_firewall(facts, [("tcp", 4, 8080, "nginx"), ("tcp", 4, 3000, "node")])
    assert fail.verdict is Verdict.FAIL and fail.code == "FIREWALL_BLOCKS_LOOPBACK"
    assert "tcp 8080 (nginx) blocked by nft inet lsfilter input" in fail.evidence
    assert "3000" not in fail.evidence and fail.service_level


def test_firewall_rule_aimed_at_loopback_without_listener_warns():
    facts = FirewallFacts(iptables_save=(FIX / "iptables_save.txt").read_text())
    warn = check_firewall(facts, [("tcp", 4, 3000, "node")])
    assert warn.verdict is Verdict.WARN and warn.code == "FIREWALL_LOOPBACK_RULE"
    assert "dport 5432" in warn.evidence or "5432" in warn.evidence


def test_firewall_drop_policy_blocks_all_of_lo():
    fail = check_firewall(FirewallFacts(iptables_save=POLICY_DROP))
    assert fail.verdict is Verdict.FAIL and "any port on 127.0.0.1 blocked by" in fail.evidence
    assert not fail.service_level


def test_firewall_ip6_drop_policy_blocks_v6_loopback_only():
    fail = check_firewall(FirewallFacts(ip6tables_save=POLICY_DROP))
    assert fail.verdict is Verdict.FAIL and "any port on ::1 blocked by" in fail.evidence
    assert "127.0.0.1" not in fail.evidence.split("; ", 1)[1]
    assert (
        check_firewall(FirewallFacts(ip6tables_save=POLICY_DROP), ipv6=False).verdict is Verdict.OK
    )


def test_firewall_unreadable_or_not_read():
    assert check_firewall(None).verdict is Verdict.SKIPPED
    skipped = check_firewall(FirewallFacts(errors=("nft: not installed",)))
    assert skipped.verdict is Verdict.SKIPPED and "nft: not installed" in skipped.evidence
    _, errors = parse_firewall(FirewallFacts(nft_json="{not json"))
    assert errors and errors[0].startswith("nft:")


def test_interfaces(healthy):
    assert check_interfaces(healthy.loopback.links).verdict is Verdict.OK
    down = (
        healthy.loopback.links[0],
        LinkInfo(name="eth0", index=2, up=False, running=False, loopback=False),
    )
    fail = check_interfaces(down)
    assert (
        fail.verdict is Verdict.FAIL
        and "eth0 DOWN" in fail.evidence
        and fail.remedy.startswith("ip link set eth0 up")
    )
    assert check_interfaces(healthy.loopback.links[:1]).verdict is Verdict.WARN


def test_host_addresses(healthy):
    ok = check_host_addresses(healthy.loopback.addresses, healthy.loopback.links)
    assert ok.verdict is Verdict.OK and "192.0.2.2/24 (eth0)" in ok.evidence
    lo_only_addrs = healthy.loopback.addresses[:2]
    assert check_host_addresses(lo_only_addrs, healthy.loopback.links).verdict is Verdict.FAIL
    assert (
        check_host_addresses(lo_only_addrs, healthy.loopback.links[:1]).verdict is Verdict.SKIPPED
    )


def test_default_route(healthy):
    ok = check_default_route(healthy.loopback.main_routes, healthy.loopback.links)
    assert ok.verdict is Verdict.OK and "IPv4 via 192.0.2.1 dev eth0" in ok.evidence
    none = check_default_route(
        [RouteEntry(family=4, table=254, type="unicast", dst="192.0.2.0/24", dev="eth0")],
        healthy.loopback.links,
    )
    assert none.verdict is Verdict.WARN and none.code == "NO_DEFAULT_ROUTE"


def test_host_echoes(healthy):
    assert [c.verdict for c in check_host_echoes(healthy.localnet.echoes)] == [
        Verdict.OK,
        Verdict.OK,
    ]
    blocked = EchoResult(
        proto="tcp", address=A("192.0.2.2"), port=4000, phase="connect", error="connect: timed out"
    )
    res = check_host_echoes([blocked])[0]
    assert res.verdict is Verdict.FAIL and res.rung == 2 and "timed out" in res.evidence
    assert check_host_echoes([])[0].verdict is Verdict.SKIPPED
    dad = EchoResult(
        proto="tcp",
        address=A("fd00::2"),
        phase="bind",
        error="bind: Cannot assign requested address (EADDRNOTAVAIL)",
    )
    assert check_host_echoes([dad])[0].verdict is Verdict.WARN


def test_external():
    ok = ExternalFacts(
        host="db.example",
        port=5432,
        addresses=(A("192.0.2.9"),),
        resolve_us=1200.0,
        connects=(("192.0.2.9", 800.0, None),),
    )
    assert (
        check_external_dns(ok).verdict is Verdict.OK
        and "in 1.2 ms" in check_external_dns(ok).evidence
    )
    assert check_external_connect(ok).verdict is Verdict.OK
    nxdomain = ExternalFacts(host="nope.invalid", port=1, resolve_error="Name or service not known")
    assert check_external_dns(nxdomain).verdict is Verdict.FAIL
    assert check_external_connect(nxdomain).verdict is Verdict.SKIPPED
    refused = replace(
        ok, connects=(("192.0.2.9", None, "connect: Connection refused (ECONNREFUSED)"),)
    )
    assert check_external_connect(refused).verdict is Verdict.FAIL
    second = replace(
        ok, connects=(("192.0.2.9", None, "connect: timed out"), ("192.0.2.10", 500.0, None))
    )
    assert check_external_connect(second).verdict is Verdict.WARN
    literal = ExternalFacts(host="127.0.0.1", port=1, addresses=(A("127.0.0.1"),), resolve_us=0.0)
    assert check_external_dns(literal).verdict is Verdict.SKIPPED

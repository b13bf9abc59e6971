"""Firewall parsers and evaluation on recorded rulesets (tests/unit/analysis/firewall/record_firewall_fixtures.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopscope.analysis.firewall.evaluate import (
    Match,
    Packet,
    evaluate,
    find_loopback_blocks,
    merge_rulesets,
    parse_iptables_save,
    parse_nft_json,
)
from loopscope.errors import ParseError

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def nft():  # type: ignore[no-untyped-def]
    return parse_nft_json((FIX / "nft_ruleset.json").read_text())


@pytest.fixture(scope="module")
def ipt():  # type: ignore[no-untyped-def]
    return parse_iptables_save((FIX / "iptables_save.txt").read_text())


def _chain(rs, family, table, name):  # type: ignore[no-untyped-def]
    return next(c for c in rs.chains if (c.family, c.table, c.name) == (family, table, name))


def test_nft_golden_rule(nft) -> None:  # type: ignore[no-untyped-def]
    chain = _chain(nft, "inet", "lsfilter", "input")
    assert chain.hook == "input" and chain.policy == "accept" and chain.priority == 0
    rule = chain.rules[1]
    assert rule.verdict == "drop"
    assert rule.matches == (
        Match("iif", False, ("lo",)),
        Match("dport", False, ((8080, 8080),)),
        Match("l4proto", False, ("tcp",)),
    )
    assert rule.text == "iifname lo tcp dport 8080 drop"


def test_nft_sets_ranges_prefixes_and_jumps(nft) -> None:  # type: ignore[no-untyped-def]
    rules = _chain(nft, "inet", "lsfilter", "input").rules
    assert rules[0].matches == (Match("ct_state", False, ("established", "related")),)
    assert rules[2].matches[0] == Match("daddr", False, ("127.0.0.0/8",))
    assert rules[2].matches[1] == Match("dport", False, ((9000, 9100),))
    assert rules[2].verdict == "reject"
    assert rules[3].matches[1] == Match("dport", False, ((53, 53), (5353, 5353)))
    assert rules[4].matches[0] == Match(
        "dport", False, ((7001, 7001), (7002, 7002))
    )  # @blocked resolved
    assert (rules[5].verdict, rules[5].target) == ("jump", "extra")
    assert rules[5].matches[0] == Match("dport", True, ((22, 22),))


def test_nft_iptables_nft_rules_show_xt_as_unknown(nft) -> None:  # type: ignore[no-untyped-def]
    rule = _chain(nft, "ip", "filter", "INPUT").rules[1]
    assert rule.verdict == "reject"
    assert Match("unknown", False, ("xt multiport",)) in rule.matches


def test_iptables_golden_rules(ipt) -> None:  # type: ignore[no-untyped-def]
    assert ipt.nf_tables_backed
    v4 = _chain(ipt, "ip", "filter", "INPUT")
    assert v4.hook == "input" and v4.policy == "accept"
    assert v4.rules[0].matches == (
        Match("iif", False, ("lo",)),
        Match("l4proto", False, ("tcp",)),
        Match("dport", False, ((5432, 5432),)),
    )
    assert v4.rules[1].matches[2] == Match("dport", False, ((80, 80), (443, 443)))
    out = _chain(ipt, "ip", "filter", "OUTPUT").rules[0]
    assert out.matches[0] == Match("oif", True, ("lo",)) and out.matches[2] == Match(
        "dport", False, ((1000, 2000),)
    )
    v6 = _chain(ipt, "ip6", "filter", "INPUT")
    assert v6.rules[0].matches[2] == Match("dport", False, ((6379, 6379),))


@pytest.mark.parametrize(
    ("proto", "version", "daddr", "dport", "blocked", "where"),
    [
        ("tcp", 4, "127.0.0.1", 8080, True, "nft inet lsfilter input"),
        ("tcp", 6, "::1", 8080, True, "nft inet lsfilter input"),
        ("tcp", 4, "127.0.0.1", 8081, False, None),
        ("tcp", 4, "127.0.0.5", 9050, True, "nft inet lsfilter input"),
        ("tcp", 6, "::1", 9050, False, None),
        ("udp", 6, "::1", 5353, True, "nft inet lsfilter input"),
        ("udp", 4, "127.0.0.1", 5353, False, None),
        ("tcp", 6, "::1", 7002, True, "nft inet lsfilter input"),
        ("tcp", 4, "127.0.0.1", 6000, True, "nft inet lsfilter extra"),
        ("tcp", 4, "127.0.0.1", 7777, True, "nft inet lsfilter output"),
        ("tcp", 4, "127.0.0.1", 5432, True, "iptables ip filter INPUT"),
        ("tcp", 4, "127.0.0.1", 443, True, "iptables ip filter INPUT"),
        ("tcp", 4, "127.0.0.2", 443, False, None),
        ("tcp", 6, "::1", 6379, True, "iptables ip6 filter INPUT"),
        ("tcp", 4, "127.0.0.1", 6379, False, None),
        ("udp", 4, "127.0.0.1", 1500, False, None),  # "! -o lo": loopback is exempt
    ],
)
def test_evaluate_merged(nft, ipt, proto, version, daddr, dport, blocked, where) -> None:  # type: ignore[no-untyped-def]
    verdict = evaluate(
        merge_rulesets(nft, ipt), Packet(proto=proto, version=version, daddr=daddr, dport=dport)
    )
    assert verdict.blocked is blocked
    if where:
        assert verdict.rule is not None and verdict.rule.where == where
    else:
        assert verdict.rule is None


def test_nft_alone_xt_rule_is_only_possible(nft) -> None:  # type: ignore[no-untyped-def]
    verdict = evaluate(nft, Packet(proto="tcp", version=4, daddr="127.0.0.1", dport=443))
    assert not verdict.blocked
    assert [r.chain for r in verdict.possible] == ["INPUT"]
    assert "may match" in verdict.evidence


def test_policy_drop_and_accept_before_drop() -> None:
    rs = parse_iptables_save(
        "*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n"
    )
    assert not evaluate(rs, Packet(proto="tcp", version=4, daddr="127.0.0.1", dport=1)).blocked
    rs2 = parse_iptables_save("*filter\n:INPUT DROP [0:0]\n-A INPUT -p udp -j ACCEPT\nCOMMIT\n")
    verdict = evaluate(rs2, Packet(proto="tcp", version=4, daddr="127.0.0.1", dport=1))
    assert verdict.blocked and verdict.policy_chain == "iptables ip filter INPUT"


def test_goto_and_return() -> None:
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n:sub - [0:0]\n"
        "-A INPUT -p tcp -g sub\n-A INPUT -p tcp -j DROP\n"
        "-A sub --dport 80 -p tcp -j RETURN\nCOMMIT\n"
    )
    rs = parse_iptables_save(text)
    # goto: falling off the end of "sub" ends the base chain (policy accept), never reaching the DROP
    assert not evaluate(rs, Packet(proto="tcp", version=4, daddr="127.0.0.1", dport=81)).blocked


def test_find_loopback_blocks(nft, ipt) -> None:  # type: ignore[no-untyped-def]
    texts = [r.text for r in find_loopback_blocks(merge_rulesets(nft, ipt))]
    assert "iifname lo tcp dport 8080 drop" in texts
    assert "-A INPUT -i lo -p tcp -m tcp --dport 5432 -j DROP" in texts
    assert not any("! -o lo" in t for t in texts)  # negated lo: traffic NOT on lo
    assert len(texts) == 8


def test_parse_errors() -> None:
    with pytest.raises(ParseError):
        parse_nft_json("not json")
    with pytest.raises(ParseError):
        parse_iptables_save("-A INPUT -j DROP\n")
    with pytest.raises(ParseError):
        parse_iptables_save("*filter\n-A INPUT -s 999.1.1.1 -j DROP\n")


def test_policy_drop_names_the_right_source_in_a_merged_ruleset(nft) -> None:  # type: ignore[no-untyped-def]
    ipt = parse_iptables_save("*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
    verdict = evaluate(
        merge_rulesets(nft, ipt), Packet(proto="tcp", version=4, daddr="127.0.0.1", dport=1)
    )
    assert verdict.blocked and verdict.policy_chain == "iptables ip filter INPUT"


def test_parse_rulesets_merges_and_reports_bad_dumps() -> None:
    from loopscope.analysis.firewall.evaluate import parse_rulesets

    nft_text = (FIX / "nft_ruleset.json").read_text()
    ipt_text = (FIX / "iptables_save.txt").read_text()
    v4, _, v6 = ipt_text.partition("# Generated by ip6tables-save")
    rs, errors = parse_rulesets(nft_text, v4, "# Generated by ip6tables-save" + v6)
    assert errors == ()
    assert evaluate(rs, Packet(proto="tcp", version=4, daddr="127.0.0.1", dport=443)).blocked
    assert evaluate(rs, Packet(proto="tcp", version=6, daddr="::1", dport=6379)).blocked
    rs2, errors2 = parse_rulesets("{broken", None, None)
    assert rs2.chains == () and errors2 and errors2[0].startswith("nft:")

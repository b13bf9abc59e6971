"""Firewall parsers: a golden iptables rule, and any text gives a Ruleset or a ParseError (never another
exception), for nft JSON, iptables-save dumps and their merge."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.analysis.firewall.model import Match
from loopscope.analysis.firewall.parse import (
    parse_firewall_facts,
    parse_iptables_save,
    parse_nft_json,
    parse_rulesets,
)
from loopscope.errors import ParseError
from loopscope.model.firewall import FirewallFacts

FIX = Path(__file__).parent / "fixtures"
NFT_DOC = json.loads((FIX / "nft_ruleset.json").read_text())


def test_iptables_rule_golden() -> None:
    rs = parse_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp -m tcp --dport 5432 -j DROP\nCOMMIT\n"
    )
    (chain,) = [c for c in rs.chains if c.name == "INPUT"]
    (rule,) = chain.rules
    assert rule.verdict == "drop"
    assert set(rule.matches) == {
        Match("iif", False, ("lo",)),
        Match("l4proto", False, ("tcp",)),
        Match("dport", False, ((5432, 5432),)),
    }


def test_parse_rulesets_keeps_what_parses() -> None:
    ruleset, errors = parse_rulesets(nft_json="{", iptables_save="*filter\nCOMMIT\n")
    assert len(errors) == 1 and errors[0].startswith("nft: ")
    assert ruleset is not None


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**33), 2**33)
    | st.text(max_size=8)
    | st.sampled_from(
        ["lo", "tcp", "udp", "ip", "inet", "127.0.0.1", "::1", "drop", "accept", "@s"]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "match",
                    "op",
                    "left",
                    "right",
                    "meta",
                    "key",
                    "payload",
                    "protocol",
                    "field",
                    "range",
                    "prefix",
                    "addr",
                    "len",
                    "set",
                    "elem",
                    "jump",
                    "goto",
                    "drop",
                    "accept",
                    "reject",
                    "family",
                    "table",
                    "chain",
                    "name",
                    "hook",
                    "prio",
                    "policy",
                    "expr",
                    "type",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _mutate(path: list[int], value: Any) -> str:
    """The recorded nft document with one value somewhere inside it replaced by ``value``."""
    doc = copy.deepcopy(NFT_DOC)
    node: Any = doc
    for step in path:
        if isinstance(node, dict) and node:
            key = sorted(node)[step % len(node)]
            if not isinstance(node[key], (dict, list)) or step % 3 == 0:
                node[key] = value
                break
            node = node[key]
        elif isinstance(node, list) and node:
            i = step % len(node)
            if not isinstance(node[i], (dict, list)) or step % 5 == 0:
                node[i] = value
                break
            node = node[i]
        else:
            break
    return json.dumps(doc)


_NFT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda items: json.dumps({"nftables": items}), st.lists(_JSON, max_size=4)),
    st.builds(_mutate, st.lists(st.integers(0, 50), min_size=1, max_size=8), _JSON),
)


@given(_NFT)
@example('{"nftables": [null]}')  # found by this test: TypeError
@example('{"nftables": [{"chain": {}}]}')  # KeyError
@example(
    '{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"match": null}]}}]}'
)
def test_fuzz_parse_nft_json(text: str) -> None:
    try:
        parse_nft_json(text)
    except ParseError:
        pass


_TOKENS = st.sampled_from(
    [
        "-A",
        "INPUT",
        "OUTPUT",
        "-i",
        "-o",
        "lo",
        "-p",
        "tcp",
        "udp",
        "all",
        "-m",
        "multiport",
        "tcp",
        "--dport",
        "--sport",
        "--dports",
        "--sports",
        "5432",
        "80,443",
        "1000:2000",
        "0:",
        ":9",
        "x",
        "-1",
        "70000",
        "-s",
        "-d",
        "127.0.0.1/8",
        "::1/128",
        "10.0.0.300",
        "!",
        "-j",
        "DROP",
        "REJECT",
        "ACCEPT",
        "RETURN",
        "mychain",
        "-N",
        "--reject-with",
        "tcp-reset",
        "-g",
        "--ctstate",
        "NEW",
    ]
)
_LINES = st.one_of(
    st.builds(lambda tokens: " ".join(tokens), st.lists(_TOKENS, max_size=10)),
    st.sampled_from(
        [
            "*filter",
            "*nat",
            "*raw",
            "*bogus",
            ":INPUT ACCEPT [0:0]",
            ":X - [0:0]",
            ":INPUT",
            "COMMIT",
            "# Generated by ip6tables-save v1.8.9",
            "",
        ]
    ),
    st.text(max_size=20),
)
_DUMPS = st.builds("\n".join, st.lists(_LINES, max_size=12))


@given(_DUMPS, st.sampled_from([None, "ip", "ip6"]))
def test_fuzz_parse_iptables_save(text: str, family: str | None) -> None:
    try:
        parse_iptables_save(text, family)
    except ParseError:
        pass


@given(st.none() | _NFT, st.none() | _DUMPS, st.none() | _DUMPS)
def test_fuzz_parse_rulesets(nft: str | None, ipt: str | None, ip6t: str | None) -> None:
    parse_rulesets(nft_json=nft, iptables_save=ipt, ip6tables_save=ip6t)  # errors become messages


@given(
    st.one_of(st.none(), _NFT),
    st.one_of(st.none(), st.text(max_size=200)),
    st.one_of(st.none(), st.text(max_size=200)),
)
def test_fuzz_parse_firewall_facts(nft: str | None, v4: str | None, v6: str | None) -> None:
    """What the three tools printed, whatever it is, gives a ruleset or None and the errors as text."""
    _ruleset, errors = parse_firewall_facts(
        FirewallFacts(nft_json=nft, iptables_save=v4, ip6tables_save=v6)
    )
    assert all(isinstance(e, str) for e in errors)

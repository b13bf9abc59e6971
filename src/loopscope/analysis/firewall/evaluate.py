"""Firewall rulesets as values, and which rule stops a loopback packet (pure: text in, values out).

Two sources, parsed without I/O in :mod:`loopscope.analysis.firewall.parse` (reading them is
``loopscope.backends.linux.firewall``); the values are in :mod:`loopscope.analysis.firewall.model`:

- ``nft -j list ruleset`` (libnftables JSON schema 1, ``man libnftables-json``) via :func:`parse_nft_json`;
- ``iptables-save`` / ``ip6tables-save`` text via :func:`parse_iptables_save`.

With iptables-nft (``iptables-save`` header says ``(nf_tables)``) the same rules appear in both; the nft JSON
shows iptables extensions only as opaque ``xt`` expressions, so :func:`merge_rulesets` keeps the iptables
text for those tables.

A loopback TCP/UDP packet goes through the ``output`` hook with ``oif lo`` and then the ``input`` hook with
``iif lo`` (net/ipv4/ip_output.c -> loopback_xmit -> ip_rcv). :func:`evaluate` walks the base chains of
both hooks in priority order with nftables semantics (accept ends one base chain, drop/reject end the
packet, jump/goto/return, chain policy) for the first packet of a new connection (``ct state new``).
A match this module does not understand makes the rule *possible* rather than certain.

Example:
    >>> rs = parse_iptables_save("*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -i lo -p tcp --dport 8080 -j DROP\\nCOMMIT\\n")
    >>> evaluate(rs, Packet(proto="tcp", version=4, daddr="127.0.0.1", dport=8080)).blocked
    True
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from loopscope.analysis.firewall.model import (
    _BLOCKING,
    Chain,
    FirewallRule,
    FirewallVerdict,
    Match,
    Packet,
    Ruleset,
)
from loopscope.analysis.firewall.parse import (
    merge_rulesets,
    parse_iptables_save,
    parse_nft_json,
    parse_rulesets,
)

__all__ = [
    "Chain",
    "FirewallRule",
    "FirewallVerdict",
    "Match",
    "Packet",
    "Ruleset",
    "evaluate",
    "find_loopback_blocks",
    "merge_rulesets",
    "parse_iptables_save",
    "parse_nft_json",
    "parse_rulesets",
]

# ------------------------------------------------------------------------------------------- evaluation


def _match_one(m: Match, pkt: Packet, hook: str) -> bool | None:
    """True/False, or None when this module cannot judge the condition."""
    if m.field in ("iif", "oif"):
        inbound = hook in ("input", "prerouting")
        iface = pkt.iif if (m.field == "iif") == inbound else None
        hit = iface is not None and any(
            v == iface or (v.endswith(("*", "+")) and iface.startswith(v[:-1])) for v in m.values
        )
    elif m.field == "l4proto":
        hit = (
            pkt.proto in m.values
            or (pkt.proto == "tcp" and "6" in m.values)
            or (pkt.proto == "udp" and "17" in m.values)
        )
    elif m.field == "dport":
        hit = any(lo <= pkt.dport <= hi for lo, hi in m.values)
    elif m.field in ("daddr", "saddr"):
        addr = ipaddress.ip_address(
            pkt.daddr if m.field == "daddr" or pkt.saddr is None else pkt.saddr
        )
        nets = [ipaddress.ip_network(n) for n in m.values]
        if nets and all(n.version != addr.version for n in nets):
            return False
        hit = any(addr.version == n.version and addr in n for n in nets)
    elif m.field == "ct_state":
        hit = "new" in m.values
    else:
        return None
    return hit != m.negate


def _match_rule(rule: FirewallRule, pkt: Packet, hook: str) -> bool | None:
    result: bool | None = True
    for m in rule.matches:
        got = _match_one(m, pkt, hook)
        if got is False:
            return False
        if got is None:
            result = None
    return result


@dataclass(slots=True)
class _Walk:
    possible: list[FirewallRule] = field(default_factory=list)


def _run_chain(
    chains: dict[tuple[str, str, str], Chain],
    chain: Chain,
    pkt: Packet,
    hook: str,
    walk: _Walk,
    depth: int,
) -> FirewallRule | str | None:
    """Returns a blocking rule, ``"accept"``, ``"goto-end"``, or None (fell off the end / return)."""
    if depth > 16:
        return None
    for rule in chain.rules:
        hit = _match_rule(rule, pkt, hook)
        if hit is False or rule.verdict is None:
            continue
        if hit is None:
            if rule.verdict in _BLOCKING:
                walk.possible.append(rule)
            continue
        if rule.verdict in _BLOCKING:
            return rule
        if rule.verdict == "accept":
            return "accept"
        if rule.verdict == "return":
            return None
        if rule.verdict in ("jump", "goto") and rule.target:
            sub = chains.get((chain.family, chain.table, rule.target))
            if sub is None:
                continue
            got = _run_chain(chains, sub, pkt, hook, walk, depth + 1)
            if got is not None:
                return got
            if rule.verdict == "goto":
                return "goto-end"
    return None


def evaluate(ruleset: Ruleset, packet: Packet) -> FirewallVerdict:
    """What the ruleset does to the first packet of a new local connection (output then input hook).

    Args:
        ruleset: parsed rules.
        packet: the connection attempt.

    Returns:
        A FirewallVerdict: ``blocked`` with the rule or policy when certain; possible blockers otherwise.
    """
    fams = ("ip", "inet") if packet.version == 4 else ("ip6", "inet")
    index = {(c.family, c.table, c.name): c for c in ruleset.chains}
    walk = _Walk()
    for hook in ("output", "input") if packet.iif == "lo" else ("input",):
        base = sorted(
            (c for c in ruleset.chains if c.hook == hook and c.family in fams),
            key=lambda c: c.priority,
        )
        for chain in base:
            got = _run_chain(index, chain, packet, hook, walk, 0)
            if isinstance(got, FirewallRule):
                return FirewallVerdict(blocked=True, rule=got, possible=tuple(walk.possible))
            if (got is None or got == "goto-end") and chain.policy == "drop":
                where = f"{chain.source} {chain.family} {chain.table} {chain.name}"
                return FirewallVerdict(
                    blocked=True, policy_chain=where, possible=tuple(walk.possible)
                )
    return FirewallVerdict(blocked=False, possible=tuple(walk.possible))


def find_loopback_blocks(ruleset: Ruleset) -> list[FirewallRule]:
    """Drop/reject rules aimed at loopback: matching ``iif``/``oif`` lo or a destination inside
    127.0.0.0/8 or ::1 (not negated). For the doctor's rung 1.
    """
    out = []
    loop4, loop6 = ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")
    for chain in ruleset.chains:
        for rule in chain.rules:
            if rule.verdict not in _BLOCKING:
                continue
            for m in rule.matches:
                if m.negate:
                    continue
                if m.field in ("iif", "oif") and "lo" in m.values:
                    out.append(rule)
                    break
                if m.field == "daddr" and any(
                    ipaddress.ip_network(n).overlaps(
                        loop4 if ipaddress.ip_network(n).version == 4 else loop6
                    )
                    for n in m.values
                ):
                    out.append(rule)
                    break
    return out

"""Firewall rulesets as values: rules, chains, rulesets, a packet and a verdict (pure, no I/O).

Built by :mod:`loopscope.analysis.firewall.parse` from nft JSON or iptables-save text and walked by
:func:`loopscope.analysis.firewall.evaluate.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Chain", "FirewallRule", "FirewallVerdict", "Match", "Packet", "Ruleset"]

_TERMINAL = ("accept", "drop", "reject")
_BLOCKING = ("drop", "reject")
_IPT_HOOKS = {
    "INPUT": "input",
    "OUTPUT": "output",
    "FORWARD": "forward",
    "PREROUTING": "prerouting",
    "POSTROUTING": "postrouting",
}
_IPT_PRIO = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}


class Match(NamedTuple):
    """One condition of a rule.

    ``field`` is one of ``iif``, ``oif`` (interface names), ``l4proto`` (``tcp``/``udp``...), ``dport``,
    ``sport`` (values are ``(low, high)`` inclusive ranges), ``daddr``, ``saddr`` (values are networks
    as strings, ``127.0.0.0/8``), ``ct_state`` (``new``, ``established``...) or ``unknown`` (values hold
    the expression as text).
    """

    field: str
    negate: bool
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FirewallRule:
    """One rule of a chain."""

    source: str
    """``nft`` or ``iptables``."""
    family: str
    """nft family: ``ip``, ``ip6``, ``inet``, ``bridge``, ``arp``, ``netdev``."""
    table: str
    """Table name."""
    chain: str
    """Chain name."""
    position: int
    """0-based index in the chain."""
    matches: tuple[Match, ...]
    """Conditions, all of which must hold."""
    verdict: str | None
    """``accept``, ``drop``, ``reject``, ``jump``, ``goto``, ``return``; None for rules that only count/log."""
    target: str | None = None
    """Chain named by jump/goto."""
    text: str = ""
    """The rule as people write it."""

    @property
    def where(self) -> str:
        """``nft inet lsfilter input`` / ``iptables filter INPUT``."""
        return f"{self.source} {self.family} {self.table} {self.chain}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """A chain; base chains have a hook."""

    family: str
    """nft family."""
    table: str
    """Table name."""
    name: str
    """Chain name."""
    hook: str | None = None
    """``input``, ``output``... for base chains, None for regular chains."""
    priority: int = 0
    """Base chain priority (lower runs first)."""
    policy: str | None = None
    """``accept`` or ``drop`` for base chains."""
    rules: tuple[FirewallRule, ...] = ()
    """Rules in order."""
    source: str = "nft"
    """``nft`` or ``iptables``: which dump the chain came from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ruleset:
    """Every chain read from one or more sources."""

    chains: tuple[Chain, ...] = ()
    """All chains."""
    sources: tuple[str, ...] = ()
    """``nft`` / ``iptables`` / ``ip6tables`` for each ruleset merged in."""
    nf_tables_backed: bool = False
    """iptables-save reported the nf_tables backend (iptables-nft)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Packet:
    """The first packet of a new connection to a local service."""

    proto: str
    """``tcp`` or ``udp``."""
    version: int
    """4 or 6."""
    daddr: str
    """Destination address."""
    dport: int
    """Destination port."""
    saddr: str | None = None
    """Source address; None means the same as ``daddr`` (a local connection)."""
    iif: str = "lo"
    """Interface the packet arrives on: ``lo`` for a local connection (output then input hook); another
    name (a veth) for a packet from outside (input hook only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FirewallVerdict:
    """What the ruleset does to a packet."""

    blocked: bool
    """A drop/reject rule or a drop policy certainly stops the packet."""
    rule: FirewallRule | None = None
    """The rule that stops it (None when a chain policy does, or nothing)."""
    policy_chain: str | None = None
    """``nft inet t input`` when a drop policy stops it."""
    possible: tuple[FirewallRule, ...] = ()
    """Drop/reject rules that may match (they hold a condition this module cannot judge)."""

    @property
    def evidence(self) -> str:
        """One line: the rule and where it is, or the policy."""
        if self.rule is not None:
            return f"{self.rule.where}: {self.rule.text}"
        if self.policy_chain is not None:
            return f"{self.policy_chain}: policy drop"
        if self.possible:
            return "; ".join(f"{r.where}: {r.text} (may match)" for r in self.possible)
        return "no rule stops it"

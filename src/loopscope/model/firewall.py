"""The firewall rulesets of a namespace as their tools print them (read by
:mod:`loopscope.backends.linux.firewall`, parsed by :mod:`loopscope.analysis.firewall.parse`); stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FirewallFacts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FirewallFacts:
    """The namespace's firewall rulesets as their tools print them (parsed by the pure checks)."""

    nft_json: str | None = None
    """``nft -j list ruleset`` output, None when nft is missing or failed."""
    iptables_save: str | None = None
    """``iptables-save`` output, None when missing or failed."""
    ip6tables_save: str | None = None
    """``ip6tables-save`` output, None when missing or failed."""
    errors: tuple[str, ...] = ()
    """Rulesets that could not be read, and why (``nft: not installed``)."""

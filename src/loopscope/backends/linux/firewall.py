"""Read the firewall rulesets of the calling thread's network namespace: ``nft -j list ruleset``,
``iptables-save`` and ``ip6tables-save``, as text (parsed by the pure
:func:`loopscope.analysis.firewall.parse.parse_firewall_facts`).

The tools are child processes, and a child inherits the namespace of the thread that forks it: call
:func:`read_firewall` inside :func:`~loopscope.backends.linux.netns.run_in_netns` for another namespace.
Both the doctor and the probe diagnosis read rulesets here.
"""

from __future__ import annotations

from loopscope.backends.linux.command import run_tool
from loopscope.model.firewall import FirewallFacts

__all__ = ["RULESET_COMMANDS", "read_firewall"]

RULESET_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("nft", "-j", "list", "ruleset"),
    ("iptables-save",),
    ("ip6tables-save",),
)
"""The three dumps, in the order of :class:`~loopscope.model.firewall.FirewallFacts` fields."""


def read_firewall(timeout_s: float = 5.0) -> FirewallFacts:
    """Run every ruleset dump; a missing tool or a permission error becomes a line of ``errors`` (a gap,
    not a failure) and leaves that dump None.

    Args:
        timeout_s: how long each tool may run, seconds.

    Returns:
        The three dumps as printed, and one reason per dump that could not be read
        (``nft: not installed``, ``iptables-save: ... Permission denied (you must be root) (run as root)``).
    """
    texts: list[str | None] = []
    errors: list[str] = []
    for argv in RULESET_COMMANDS:
        text, err = run_tool(argv, timeout_s)
        texts.append(text)
        if err:
            errors.append(err)
    return FirewallFacts(
        nft_json=texts[0], iptables_save=texts[1], ip6tables_save=texts[2], errors=tuple(errors)
    )

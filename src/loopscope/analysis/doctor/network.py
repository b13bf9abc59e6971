"""Rung 1 firewall check, rung 2 (local network) and rung 3 (external) checks (pure).

The firewall check reuses :mod:`loopscope.analysis.firewall.evaluate` (rulesets as values, loopback packet
evaluation); this module only judges what it returns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import partial

from loopscope.analysis.doctor.facts import EchoResult, ExternalFacts, FirewallFacts, RouteEntry
from loopscope.analysis.doctor.loopback import check_echo
from loopscope.analysis.doctor.verdict import CheckResult, Verdict
from loopscope.analysis.firewall import evaluate as fw
from loopscope.model import InterfaceAddress, LinkInfo, Severity

__all__ = [
    "check_default_route",
    "check_external_connect",
    "check_external_dns",
    "check_firewall",
    "check_host_addresses",
    "check_host_echoes",
    "check_interfaces",
    "parse_firewall",
]


def parse_firewall(facts: FirewallFacts) -> tuple[fw.Ruleset, list[str]]:
    """Merge the readable rulesets (:func:`loopscope.analysis.firewall.evaluate.parse_rulesets`); returns the ruleset
    and one message per dump that did not parse."""
    ruleset, errors = fw.parse_rulesets(
        facts.nft_json or None, facts.iptables_save, facts.ip6tables_save
    )
    return ruleset, list(errors)


def check_firewall(
    facts: FirewallFacts | None,
    listeners: Sequence[tuple[str, int, int, str]] = (),
    *,
    ipv6: bool = True,
) -> CheckResult:
    """Rules that drop or reject traffic on lo or to 127/8, ::1.

    Args:
        facts: the rulesets read (None: not read).
        listeners: ``(proto, ip_version, port, label)`` of real loopback-reachable listeners to evaluate.
        ipv6: also try an arbitrary port on ::1 (off when IPv6 is disabled).

    fail: a rule (or drop policy) certainly stops a new connection to a real listener over loopback, or
    to an arbitrary loopback port (the whole of lo is blocked); warn: a drop/reject rule aimed at
    loopback exists but stops no current listener.
    """
    make = partial(
        CheckResult, id="firewall.loopback", rung=1, title="firewall rules on lo / 127/8"
    )
    if facts is None:
        return make(verdict=Verdict.SKIPPED, evidence="not read (--no-firewall)")
    ruleset, errors = parse_firewall(facts)
    read = [
        s
        for s, t in (
            ("nft -j", facts.nft_json),
            ("iptables-save", facts.iptables_save),
            ("ip6tables-save", facts.ip6tables_save),
        )
        if t is not None
    ]
    notes = list(facts.errors) + errors
    if not read:
        return make(
            verdict=Verdict.SKIPPED, evidence="; ".join(notes) or "no ruleset tool answered"
        )
    rules = fw.find_loopback_blocks(ruleset)
    blocked: list[str] = []
    probes = [(p, v, port, label) for p, v, port, label in listeners]
    probes += [("tcp", 4, 1, "any port on 127.0.0.1"), ("udp", 4, 1, "any UDP port on 127.0.0.1")]
    if ipv6:
        probes += [("tcp", 6, 1, "any port on ::1"), ("udp", 6, 1, "any UDP port on ::1")]
    for proto, version, port, label in probes:
        verdict = fw.evaluate(
            ruleset,
            fw.Packet(
                proto=proto,
                version=version,
                daddr="127.0.0.1" if version == 4 else "::1",
                dport=port,
            ),
        )
        if verdict.blocked:
            where = label if port == 1 else f"{proto} {port} ({label})"
            blocked.append(f"{where} blocked by {verdict.evidence}")
    n_rules = sum(len(c.rules) for c in ruleset.chains)
    evidence = f"read {', '.join(read)}: {len(ruleset.chains)} chains, {n_rules} rules"
    if notes:
        evidence += f" ({'; '.join(notes)})"
    data = {"rules": [f"{r.where}: {r.text}" for r in rules], "blocked": blocked}
    remedy = (
        "delete the rule (nft -a list ruleset; nft delete rule FAMILY TABLE CHAIN handle N) or add "
        "'iif lo accept' ahead of it; loopback traffic should not be filtered"
    )
    if blocked:
        whole = any(item.startswith("any ") for item in blocked)
        return make(
            verdict=Verdict.FAIL,
            service_level=not whole,
            code="FIREWALL_BLOCKS_LOOPBACK",
            data=data,
            remedy=remedy,
            evidence=evidence + "; " + "; ".join(blocked[:5]),
        )
    if rules:
        shown = "; ".join(f"{r.where}: {r.text}" for r in rules[:5])
        return make(
            verdict=Verdict.WARN,
            code="FIREWALL_LOOPBACK_RULE",
            data=data,
            remedy=remedy,
            evidence=f"{evidence}; {len(rules)} drop/reject rules aimed at loopback: {shown}",
        )
    return make(
        verdict=Verdict.OK,
        data=data,
        evidence=evidence + "; none drops or rejects loopback traffic",
    )


def _global(addr: InterfaceAddress) -> bool:
    return not addr.address.is_loopback and not addr.address.is_link_local


def check_interfaces(links: Sequence[LinkInfo]) -> CheckResult:
    """Non-loopback interfaces exist and at least one is up and running.

    warn: only lo (an isolated namespace: nothing beyond loopback to test); fail: some exist, none up.
    """
    make = partial(CheckResult, id="net.interfaces", rung=2, title="non-loopback interfaces up")
    others = [link for link in links if not link.loopback]
    up = [link for link in others if link.up and link.running]
    shown = (
        ", ".join(
            f"{link.name} {'UP' if link.up else 'DOWN'}{'' if link.running or not link.up else ' (no carrier)'}"
            for link in others[:8]
        )
        or "none"
    )
    evidence = f"{len(up)} of {len(others)} up: {shown}"
    if not others:
        return make(
            verdict=Verdict.WARN,
            severity=Severity.LOW,
            code="NO_INTERFACES",
            evidence="only lo here",
            remedy="an isolated namespace: add a veth pair if it should reach the network",
        )
    if not up:
        return make(
            verdict=Verdict.FAIL,
            code="NO_INTERFACE_UP",
            evidence=evidence,
            remedy=f"ip link set {others[0].name} up, and check the cable/carrier",
        )
    return make(verdict=Verdict.OK, evidence=evidence)


def check_host_addresses(
    addresses: Sequence[InterfaceAddress], links: Sequence[LinkInfo]
) -> CheckResult:
    """At least one global address on an up interface."""
    make = partial(
        CheckResult,
        id="net.addresses",
        rung=2,
        title="host addresses",
        depends_on=("net.interfaces",),
    )
    if not any(not link.loopback for link in links):
        return make(verdict=Verdict.SKIPPED, evidence="only lo here: no host address to expect")
    up = {link.index for link in links if link.up and not link.loopback}
    mine = [a for a in addresses if a.index in up and _global(a)]
    shown = ", ".join(f"{a.address}/{a.prefixlen} ({a.interface})" for a in mine[:6]) or "none"
    if not mine:
        return make(
            verdict=Verdict.FAIL,
            code="NO_HOST_ADDRESS",
            evidence=f"global addresses on up interfaces: {shown}",
            remedy="configure an address (DHCP client, or ip addr add ADDR/PREFIX dev IFACE)",
        )
    return make(
        verdict=Verdict.OK,
        evidence=f"{len(mine)} global addresses: {shown}",
        data={"addresses": [str(a.address) for a in mine]},
    )


def check_default_route(
    routes: Iterable[RouteEntry], links: Sequence[LinkInfo] = ()
) -> CheckResult:
    """A default route (IPv4 or IPv6) in the main table (skipped when the namespace has only lo)."""
    make = partial(
        CheckResult,
        id="net.default_route",
        rung=2,
        title="default route",
        depends_on=("net.addresses",),
    )
    if links and not any(not link.loopback for link in links):
        return make(
            verdict=Verdict.SKIPPED, evidence="only lo here: no route beyond loopback to expect"
        )
    defaults = [r for r in routes if r.dst == "default" and r.type == "unicast"]
    shown = (
        ", ".join(f"IPv{r.family} via {r.gateway or 'direct'} dev {r.dev}" for r in defaults)
        or "none"
    )
    if not defaults:
        return make(
            verdict=Verdict.WARN,
            code="NO_DEFAULT_ROUTE",
            evidence=f"default routes: {shown}",
            remedy="only directly connected networks are reachable: ip route add default via GATEWAY",
        )
    return make(verdict=Verdict.OK, evidence=f"default routes: {shown}")


def check_host_echoes(echoes: Sequence[EchoResult]) -> list[CheckResult]:
    """TCP echo through a listener on each host address (routed through lo, so it also meets the host
    firewall's input rules)."""
    if not echoes:
        return [
            CheckResult(
                id="echo.tcp.host",
                rung=2,
                title="TCP echo on host addresses",
                verdict=Verdict.SKIPPED,
                evidence="no host address on an up interface",
            )
        ]
    return [check_echo(e, rung=2) for e in echoes]


def check_external_dns(ext: ExternalFacts) -> CheckResult:
    """The external host resolves (skipped for an address literal)."""
    make = partial(CheckResult, id="ext.dns", rung=3, title=f"resolve {ext.host}")
    try:
        ipaddress.ip_address(ext.host.strip("[]"))
        return make(verdict=Verdict.SKIPPED, evidence=f"{ext.host} is an address: no DNS lookup")
    except ValueError:
        pass
    took = f" in {ext.resolve_us / 1000:.1f} ms" if ext.resolve_us is not None else ""
    if ext.resolve_error or not ext.addresses:
        return make(
            verdict=Verdict.FAIL,
            code="EXTERNAL_DNS_FAILED",
            evidence=f"getaddrinfo: {ext.resolve_error}{took}",
            remedy="check /etc/resolv.conf and that the resolver answers (resolvectl status)",
        )
    shown = ", ".join(map(str, ext.addresses[:6]))
    return make(
        verdict=Verdict.OK,
        evidence=f"{ext.host} -> {shown}{took}",
        data={"resolve_us": ext.resolve_us},
    )


def check_external_connect(ext: ExternalFacts) -> CheckResult:
    """A TCP connection to one of the external host's addresses succeeds."""
    make = partial(
        CheckResult,
        id="ext.connect",
        rung=3,
        title=f"TCP connect {ext.host}:{ext.port}",
        depends_on=("ext.dns",),
    )
    if not ext.connects:
        return make(verdict=Verdict.SKIPPED, evidence="no address to connect to")
    parts = [
        f"{a}: connected in {us / 1000:.2f} ms" if us is not None else f"{a}: {err}"
        for a, us, err in ext.connects
    ]
    data = {
        "attempts": [{"address": a, "connect_us": us, "error": err} for a, us, err in ext.connects]
    }
    if ext.connects[-1][1] is None:
        return make(
            verdict=Verdict.FAIL,
            code="EXTERNAL_CONNECT_FAILED",
            evidence="; ".join(parts),
            data=data,
            remedy="the service or a firewall on the path refuses it: try from another host, "
            "check the default route and outbound firewall rules",
        )
    verdict = Verdict.WARN if len(ext.connects) > 1 else Verdict.OK
    return make(
        verdict=verdict,
        evidence="; ".join(parts),
        data=data,
        severity=Severity.LOW,
        code="EXTERNAL_FIRST_ADDRESS_FAILED" if verdict is Verdict.WARN else "",
        remedy="the first address failed before another worked: clients without fallback fail"
        if verdict is Verdict.WARN
        else "",
    )

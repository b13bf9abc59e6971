"""Rung 1 checks of the loopback stack itself: lo, its addresses, MTU, local routes, ICMP and TCP/UDP
echo, route_localnet and 127/8 martians (pure: facts in, :class:`CheckResult` out).

Kernel facts behind the verdicts: a fresh network namespace has ``lo`` DOWN with no address and no
local route; ``ip link set lo up`` assigns 127.0.0.1/8 and ::1/128 and the local routes
(net/ipv4/devinet.c ``inet_set_ifa``/ net/ipv6/addrconf.c ``init_loopback``). 127/8 is routed only
through lo: a packet with a 127/8 source or destination seen on another interface is a martian and is
dropped unless ``route_localnet`` is set (net/ipv4/route.c ``ip_route_input_slow``).
"""

from __future__ import annotations

import ipaddress
import statistics
from functools import partial

from loopscope.analysis.doctor.facts import EchoResult, IcmpResult, LoopbackFacts, Sysctls
from loopscope.analysis.doctor.verdict import CheckResult, Verdict
from loopscope.model import LinkInfo, Severity

__all__ = [
    "check_echo",
    "check_icmp",
    "check_lo_ipv4",
    "check_lo_ipv6",
    "check_lo_link",
    "check_lo_mtu",
    "check_lo_routes",
    "check_route_localnet",
    "find_lo",
    "ip_command",
    "ipv6_disabled_by",
    "summarize_rtts",
]

_V4_NET = ipaddress.IPv4Network("127.0.0.0/8")
_V6_1 = ipaddress.IPv6Address("::1")
LO_MTU_DEFAULT = 65536


def ip_command(netns_label: str, netns_name: str | None) -> str:
    """The ``ip`` invocation that acts on the namespace.

    Examples: ``ip_command("host", None) == "ip"``; ``ip_command("blue", "blue") == "ip -n blue"``;
    ``ip_command("pid 42", None) == "nsenter -t 42 -n ip"``.
    """
    if netns_name:
        return f"ip -n {netns_name}"
    if netns_label.startswith("pid "):
        return f"nsenter -t {netns_label[4:]} -n ip"
    return "ip"


def find_lo(facts: LoopbackFacts) -> LinkInfo | None:
    """The loopback interface (IFF_LOOPBACK, or named ``lo``)."""
    return next((link for link in facts.links if link.loopback or link.name == "lo"), None)


def ipv6_disabled_by(
    facts: LoopbackFacts, disabled_all: bool | None, disabled_lo: bool | None
) -> str | None:
    """Which switch turns IPv6 off on lo, or None when it is on.

    Example: ``net.ipv6.conf.all.disable_ipv6=1`` -> ``"net.ipv6.conf.all.disable_ipv6=1"``.
    """
    if not facts.sysctls.ipv6_module:
        return "kernel command line ipv6.disable=1 (no /proc/sys/net/ipv6)"
    if disabled_all:
        return "net.ipv6.conf.all.disable_ipv6=1"
    if disabled_lo:
        return "net.ipv6.conf.lo.disable_ipv6=1"
    return None


def summarize_rtts(rtts_us: tuple[float, ...]) -> str:
    """``"p50 14.2 us, max 30.1 us over 5"``; empty for none."""
    if not rtts_us:
        return ""
    return f"p50 {statistics.median(rtts_us):.1f} us, max {max(rtts_us):.1f} us over {len(rtts_us)}"


def check_lo_link(facts: LoopbackFacts, ip: str = "ip") -> CheckResult:
    """lo exists and is administratively UP (fail, critical, otherwise)."""
    make = partial(CheckResult, id="lo.link", rung=1, title="lo exists and is UP")
    lo = find_lo(facts)
    if lo is None:
        return make(
            verdict=Verdict.FAIL,
            severity=Severity.CRITICAL,
            code="LO_MISSING",
            evidence=f"no loopback interface among {len(facts.links)} interfaces",
            remedy=f"{ip} link add lo type loopback && {ip} link set lo up",
        )
    state = "UP" if lo.up else "DOWN"
    oper = "RUNNING" if lo.running else "not running"
    evidence = f"{lo.name} (index {lo.index}) is {state}, {oper}"
    data = {"index": lo.index, "up": lo.up, "running": lo.running}
    if not lo.up:
        return make(
            verdict=Verdict.FAIL,
            severity=Severity.CRITICAL,
            code="LO_DOWN",
            data=data,
            evidence=evidence + ": 127.0.0.1 and ::1 are unreachable, every local client fails",
            remedy=f"{ip} link set lo up",
        )
    return make(verdict=Verdict.OK, evidence=evidence, data=data)


def _lo_addrs(
    facts: LoopbackFacts,
) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    lo = find_lo(facts)
    if lo is None:
        return []
    return [(a.address, a.prefixlen) for a in facts.addresses if a.index == lo.index]


def check_lo_ipv4(facts: LoopbackFacts, ip: str = "ip") -> CheckResult:
    """127.0.0.1/8 is assigned to lo (fail otherwise; warn for a narrower prefix like /32)."""
    make = partial(
        CheckResult, id="lo.ipv4", rung=1, title="127.0.0.1/8 on lo", depends_on=("lo.link",)
    )
    v4 = [(a, p) for a, p in _lo_addrs(facts) if a.version == 4]
    shown = ", ".join(f"{a}/{p}" for a, p in v4) or "none"
    if not any(a == ipaddress.IPv4Address("127.0.0.1") for a, _ in v4):
        return make(
            verdict=Verdict.FAIL,
            code="LO_NO_IPV4",
            evidence=f"IPv4 addresses on lo: {shown}",
            remedy=f"{ip} addr add 127.0.0.1/8 dev lo",
        )
    prefix = next(p for a, p in v4 if a == ipaddress.IPv4Address("127.0.0.1"))
    if prefix != 8:
        return make(
            verdict=Verdict.WARN,
            code="LO_IPV4_PREFIX",
            evidence=f"IPv4 addresses on lo: {shown}",
            remedy=f"127.0.0.0/8 is all loopback by convention: {ip} addr replace 127.0.0.1/8 dev lo",
        )
    return make(verdict=Verdict.OK, evidence=f"IPv4 addresses on lo: {shown}")


def check_lo_ipv6(facts: LoopbackFacts, disabled_by: str | None, ip: str = "ip") -> CheckResult:
    """::1/128 is assigned to lo, or IPv6 is disabled (ok, saying by which switch)."""
    make = partial(
        CheckResult,
        id="lo.ipv6",
        rung=1,
        title="::1/128 on lo (or IPv6 off)",
        depends_on=("lo.link",),
    )
    v6 = [(a, p) for a, p in _lo_addrs(facts) if a.version == 6]
    shown = ", ".join(f"{a}/{p}" for a, p in v6) or "none"
    if disabled_by:
        return make(
            verdict=Verdict.OK,
            evidence=f"IPv6 is disabled by {disabled_by}; ::1 not expected",
            data={"ipv6_disabled_by": disabled_by},
        )
    if not any(a == _V6_1 for a, _ in v6):
        return make(
            verdict=Verdict.FAIL,
            code="LO_NO_IPV6",
            evidence=f"IPv6 is enabled but lo has no ::1 (IPv6 addresses on lo: {shown})",
            remedy=f"{ip} -6 addr add ::1/128 dev lo",
        )
    return make(verdict=Verdict.OK, evidence=f"IPv6 addresses on lo: {shown}")


def check_lo_mtu(facts: LoopbackFacts, ipv6_on: bool, ip: str = "ip") -> CheckResult:
    """lo's MTU: fail below 68 (IPv4 minimum) or below 1280 with IPv6 on; warn below the default 65536."""
    make = partial(CheckResult, id="lo.mtu", rung=1, title="lo MTU", depends_on=("lo.link",))
    lo = find_lo(facts)
    if lo is None or lo.mtu is None:
        return make(verdict=Verdict.SKIPPED, evidence="no lo or no MTU reported")
    evidence = f"lo MTU {lo.mtu} bytes (default {LO_MTU_DEFAULT})"
    fix = f"{ip} link set lo mtu {LO_MTU_DEFAULT}"
    if lo.mtu < 68 or (ipv6_on and lo.mtu < 1280):
        return make(
            verdict=Verdict.FAIL,
            code="LO_MTU_TOO_SMALL",
            remedy=fix,
            data={"mtu": lo.mtu},
            evidence=evidence + ("; IPv6 needs >= 1280" if lo.mtu >= 68 else "; IPv4 needs >= 68"),
        )
    if lo.mtu < LO_MTU_DEFAULT:
        return make(
            verdict=Verdict.WARN,
            severity=Severity.LOW,
            code="LO_MTU_SMALL",
            remedy=fix,
            data={"mtu": lo.mtu},
            evidence=evidence + ": more segments per byte, lower throughput",
        )
    return make(verdict=Verdict.OK, evidence=evidence, data={"mtu": lo.mtu})


def check_lo_routes(facts: LoopbackFacts, ipv6_on: bool, ip: str = "ip") -> CheckResult:
    """The local table routes 127.0.0.0/8 (and ::1) to lo, and the kernel's lookup agrees.

    Reads both the table (``ip route show table local``) and ``ip route get`` answers, which include
    policy rules: a rule or a more specific route that sends 127/8 elsewhere shows up in the lookup.
    """
    make = partial(
        CheckResult,
        id="lo.routes",
        rung=1,
        title="local routes for 127/8 and ::1",
        depends_on=("lo.link", "lo.ipv4", "lo.ipv6"),
    )
    if facts.route_error:
        return make(
            verdict=Verdict.SKIPPED, evidence=f"routing table unreadable: {facts.route_error}"
        )
    have_v4 = any(
        r.type == "local" and r.dst == "127.0.0.0/8" and r.dev == "lo" for r in facts.local_routes
    )
    have_v6 = any(
        r.type == "local" and r.dst == "::1/128" and r.dev == "lo" for r in facts.local_routes
    )
    problems = []
    if not have_v4:
        problems.append("no 'local 127.0.0.0/8 dev lo' in table local")
    if ipv6_on and not have_v6:
        problems.append("no 'local ::1 dev lo' in table local")
    shown = []
    for look in facts.lookups:
        if look.address.version == 6 and not ipv6_on:
            continue
        if look.error:
            problems.append(f"route get {look.address}: {look.error}")
        else:
            shown.append(f"route get {look.address}: {look.type} dev {look.dev}")
            if look.type != "local" or look.dev != "lo":
                problems.append(
                    f"{look.address} is routed as {look.type} via {look.dev}, not local via lo"
                )
    evidence = "; ".join(shown) or "no lookups"
    if problems:
        if shown:
            problems.append(evidence)
        return make(
            verdict=Verdict.FAIL,
            code="LO_ROUTES_MISSING",
            evidence="; ".join(problems),
            remedy=f"{ip} link set lo up restores them; else {ip} route add local 127.0.0.0/8 dev lo "
            f"table local, and check '{ip} rule' for a rule ahead of 'lookup local'",
        )
    return make(verdict=Verdict.OK, evidence=f"local 127.0.0.0/8 dev lo present; {evidence}")


def check_icmp(result: IcmpResult, sysctls: Sysctls | None = None) -> CheckResult:
    """Echo replies came back from ``result.target``; skipped when no ICMP socket is allowed.

    No reply while ``icmp_echo_ignore_all`` is set is a warning, not a failure: the kernel was told not to
    answer, and the TCP/UDP echo checks decide whether loopback works.
    """
    version = result.target.version
    make = partial(
        CheckResult,
        id=f"icmp.{result.target}",
        rung=1,
        title=f"ICMP echo {result.target}",
        depends_on=("lo.link", "lo.ipv4" if version == 4 else "lo.ipv6", "lo.routes"),
    )
    if result.skipped_reason:
        return make(verdict=Verdict.SKIPPED, evidence=result.skipped_reason)
    data = {
        "method": result.method,
        "sent": result.sent,
        "received": result.received,
        "rtts_us": list(result.rtts_us),
    }
    evidence = f"{result.method} socket: {result.received}/{result.sent} replies"
    if result.rtts_us:
        evidence += f", rtt {summarize_rtts(result.rtts_us)}"
    if result.error:
        evidence += f"; {result.error}"
    ignored = None
    if sysctls is not None:
        if version == 4 and sysctls.icmp_echo_ignore_v4:
            ignored = "net.ipv4.icmp_echo_ignore_all=1"
        elif version == 6 and sysctls.icmp_echo_ignore_v6:
            ignored = "net.ipv6.icmp.echo_ignore_all=1"
    if result.received == 0 and ignored and result.sent:
        return make(
            verdict=Verdict.WARN,
            severity=Severity.LOW,
            code="ICMP_ECHO_IGNORED",
            data=data,
            evidence=f"{evidence}; the kernel ignores echo requests: {ignored}",
            remedy=f"ping cannot test loopback here; rely on the TCP/UDP echo checks, or sysctl -w "
            f"{ignored[:-1]}0",
        )
    if result.received == 0:
        return make(
            verdict=Verdict.FAIL,
            code="LOOPBACK_ICMP_FAILED",
            evidence=evidence,
            data=data,
            remedy="check that lo is up and that no firewall rule drops ICMP on lo "
            "(nft list ruleset; iptables-save)",
        )
    if result.received < result.sent:
        return make(
            verdict=Verdict.WARN,
            code="LOOPBACK_ICMP_LOSS",
            evidence=evidence,
            data=data,
            remedy="loss on loopback means a rate limit or firewall rule on lo: "
            "check net.ipv4.icmp_ratelimit and the ruleset",
        )
    return make(verdict=Verdict.OK, evidence=evidence, data=data)


def check_echo(result: EchoResult, *, rung: int = 1, slow_us: float = 5000.0) -> CheckResult:
    """A TCP/UDP echo through the doctor's own listener worked; warn when the median RTT exceeds
    ``slow_us`` (loopback round trips take ~10-70 us on an idle machine)."""
    addr = result.address
    deps: tuple[str, ...] = ("lo.link", "lo.routes")
    if rung == 1:
        deps += ("lo.ipv4",) if addr.version == 4 else ("lo.ipv6",)
    make = partial(
        CheckResult,
        id=f"echo.{result.proto}.{addr}",
        rung=rung,
        title=f"{result.proto.upper()} echo {addr}",
        depends_on=deps,
    )
    if result.skipped_reason:
        return make(verdict=Verdict.SKIPPED, evidence=result.skipped_reason)
    where = f"[{addr}]:{result.port}" if addr.version == 6 else f"{addr}:{result.port}"
    data = {
        "port": result.port,
        "connect_us": result.connect_us,
        "rtts_us": list(result.rtts_us),
        "phase": result.phase,
    }
    if (
        result.error
        and rung == 2
        and addr.version == 6
        and result.phase == "bind"
        and "EADDRNOTAVAIL" in result.error
    ):
        return make(
            verdict=Verdict.WARN,
            severity=Severity.LOW,
            code="HOST_ADDRESS_TENTATIVE",
            data=data,
            evidence=f"bind {addr} port 0: {result.error}: the address is still tentative (duplicate "
            "address detection) or was just removed",
            remedy="retry in a few seconds; if it stays, 'ip -6 addr' shows it as tentative/dadfailed",
        )
    if result.error:
        if result.phase == "bind":
            evidence = f"bind {addr} port 0: {result.error}"
        else:
            evidence = f"listener on {where}; {result.error}"
        hint = (
            "the address is not assigned here"
            if result.phase == "bind"
            else "a firewall rule or a missing route stops it"
        )
        return make(
            verdict=Verdict.FAIL,
            code=f"{result.proto.upper()}_ECHO_FAILED",
            evidence=evidence,
            data=data,
            remedy=f"{hint}: see the lo checks above and the firewall check",
        )
    evidence = f"listener {where}"
    if result.connect_us is not None:
        evidence += f", connect {result.connect_us:.0f} us"
    evidence += f", rtt {summarize_rtts(result.rtts_us)}"
    p50 = statistics.median(result.rtts_us) if result.rtts_us else 0.0
    data["rtt_p50_us"] = p50
    if p50 > slow_us:
        return make(
            verdict=Verdict.WARN,
            severity=Severity.LOW,
            code="LOOPBACK_SLOW",
            evidence=evidence,
            data=data,
            remedy="loopback should answer in tens of microseconds: look for CPU starvation, "
            "a qdisc or netem on lo (tc qdisc show dev lo), or nft rules with heavy logging",
        )
    return make(verdict=Verdict.OK, evidence=evidence, data=data)


def check_route_localnet(facts: LoopbackFacts, ip: str = "ip") -> CheckResult:
    """route_localnet off everywhere and 127/8 nowhere but on lo (else other hosts may reach services
    bound to 127.0.0.1: CVE-2020-8558); martian counters as evidence."""
    make = partial(CheckResult, id="lo.localnet", rung=1, title="route_localnet, 127/8 martians")
    sysctls = facts.sysctls
    lo = find_lo(facts)
    on = sorted(name for name, value in sysctls.route_localnet.items() if value)
    off_lo = [
        f"{a.address}/{a.prefixlen} on {a.interface}"
        for a in facts.addresses
        if a.address.version == 4 and a.address in _V4_NET and (lo is None or a.index != lo.index)
    ]
    stray = [
        f"{r.dst} via {r.dev}"
        for r in facts.main_routes + facts.local_routes
        if r.family == 4
        and r.dst != "default"
        and r.dev not in (None, "lo")
        and ipaddress.ip_network(r.dst).overlaps(_V4_NET)
    ]
    counters = ""
    if sysctls.martian_src is not None:
        counters = f"; martian packets dropped since boot: {sysctls.martian_src} source, {sysctls.martian_dst} destination"
    data = {
        "route_localnet": sorted(on),
        "off_lo": off_lo,
        "stray_routes": stray,
        "martian_src": sysctls.martian_src,
        "martian_dst": sysctls.martian_dst,
    }
    if off_lo or stray:
        what = "; ".join(off_lo + stray)
        return make(
            verdict=Verdict.FAIL,
            code="LOOPBACK_ADDRESS_OFF_LO",
            data=data,
            evidence=f"127/8 used outside lo: {what}{counters}",
            remedy=f"keep 127.0.0.0/8 on lo only ({ip} addr del / {ip} route del); packets with "
            "127/8 addresses on other interfaces are dropped as martians",
        )
    if on:
        names = ", ".join(f"net.ipv4.conf.{n}.route_localnet=1" for n in on)
        return make(
            verdict=Verdict.WARN,
            code="ROUTE_LOCALNET_ON",
            data=data,
            evidence=f"{names}{counters}",
            remedy="hosts on that link can reach services bound to 127.0.0.1 (CVE-2020-8558): "
            "sysctl -w net.ipv4.conf.all.route_localnet=0 unless a DNAT to 127/8 needs it",
        )
    return make(
        verdict=Verdict.OK,
        data=data,
        evidence=f"route_localnet off on {len(sysctls.route_localnet)} entries; 127/8 only on lo{counters}",
    )

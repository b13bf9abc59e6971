"""``localhost`` resolution checks: the hosts file, getaddrinfo order, and the family mismatch between
what ``localhost`` resolves to first and what the real listeners are bound to (pure).

Background: glibc's getaddrinfo sorts per RFC 6724; with the usual ``/etc/hosts`` (``127.0.0.1
localhost`` and ``::1 localhost``) ``::1`` comes first. A client that tries only the first address
(Node.js >= 17, many HTTP clients without Happy Eyeballs, health checks) then gets ECONNREFUSED from
a server listening on 127.0.0.1 only, although ``curl 127.0.0.1:PORT`` works.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import partial

from loopscope.analysis.doctor.facts import HostsEntry, ResolutionFacts
from loopscope.analysis.doctor.verdict import CheckResult, Verdict
from loopscope.model import Family, Proto, Severity, SocketRecord, TcpState

__all__ = ["check_localhost", "check_localhost_mismatch", "listener_families", "parse_hosts"]


def parse_hosts(text: str) -> list[HostsEntry]:
    """Parse hosts(5) text: ``address name [aliases...]``, ``#`` starts a comment.

    Example: ``parse_hosts("127.0.0.1 localhost  # v4\\n::1 localhost ip6-localhost\\n")`` ->
    ``[HostsEntry(address="127.0.0.1", names=("localhost",), lineno=1),
    HostsEntry(address="::1", names=("localhost", "ip6-localhost"), lineno=2)]``.
    """
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            out.append(HostsEntry(address=words[0], names=tuple(words[1:]), lineno=lineno))
    return out


def _precedence(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """RFC 6724 default policy table precedence: ::1 50, IPv4 (::ffff:0:0/96) 35, other IPv6 40."""
    if isinstance(addr, ipaddress.IPv4Address):
        return 35
    if addr == ipaddress.IPv6Address("::1"):
        return 50
    return 35 if addr.ipv4_mapped is not None else 40


def order_from_hosts(
    entries: Iterable[HostsEntry],
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """The order getaddrinfo gives for a name found in a hosts file: the file's addresses, stably sorted by
    RFC 6724 precedence (rule 6), as glibc does when every address is reachable.

    Example: lines ``127.0.0.1 localhost`` then ``::1 localhost`` -> ``(::1, 127.0.0.1)``.
    Invalid addresses are ignored.
    """
    seen: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for entry in entries:
        try:
            addr = ipaddress.ip_address(entry.address.split("%", 1)[0])
        except ValueError:
            continue
        if addr not in seen:
            seen.append(addr)
    return tuple(sorted(seen, key=lambda a: -_precedence(a)))


def _is_loop(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def _version(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return 4
    return addr.version


def check_localhost(res: ResolutionFacts) -> CheckResult:
    """``localhost`` resolves, and only to loopback addresses.

    fail: no answer, or a non-loopback address (a hosts-file typo sends "local" traffic to the network);
    warn: the hosts file has no ``localhost`` line (glibc then synthesises one, other resolvers may not).
    """
    base = partial(
        CheckResult, id="resolve.localhost", rung=1, title="localhost resolves to loopback"
    )
    order = ", ".join(str(a) for a in res.order) or "nothing"
    lines = (
        ", ".join(f"line {e.lineno} {e.address}" for e in res.hosts_entries)
        or f"no {res.name} line"
    )
    took = f" in {res.duration_us / 1000:.1f} ms" if res.duration_us else ""
    evidence = f"{res.name} -> {order} ({res.resolver}{took}); {res.hosts_path}: {lines}"
    data = {
        "order": [str(a) for a in res.order],
        "hosts_path": res.hosts_path,
        "resolver": res.resolver,
        "duration_us": res.duration_us,
    }
    if res.error or not res.order:
        return base(
            verdict=Verdict.FAIL,
            evidence=f"{evidence}; error: {res.error}",
            remedy=f"add '127.0.0.1 localhost' and '::1 localhost' to {res.hosts_path}",
            code="LOCALHOST_UNRESOLVED",
            data=data,
        )
    bad = [a for a in res.order if not _is_loop(a)]
    if bad:
        return base(
            verdict=Verdict.FAIL,
            evidence=evidence,
            code="LOCALHOST_NOT_LOOPBACK",
            remedy=f"localhost must map to 127.0.0.1 and ::1 only: fix {res.hosts_path} "
            f"(remove {', '.join(map(str, bad))})",
            data=data,
        )
    if not res.hosts_entries:
        why = res.hosts_error or "no localhost line"
        return base(
            verdict=Verdict.WARN,
            evidence=f"{evidence} ({why})",
            code="LOCALHOST_NOT_IN_HOSTS",
            severity=Severity.LOW,
            remedy=f"add '127.0.0.1 localhost' and '::1 localhost' to {res.hosts_path}",
            data=data,
        )
    return base(verdict=Verdict.OK, evidence=evidence, data=data)


def listener_families(
    sockets: Iterable[SocketRecord], *, skip_ports: Sequence[int] = ()
) -> dict[int, set[int]]:
    """TCP ports listening on loopback-reachable addresses -> IP versions a ``localhost`` client can use.

    127.0.0.0/8 and 0.0.0.0 give 4; ::1 gives 6; ``[::]`` gives 6, and 4 as well unless IPV6_V6ONLY;
    ``[::ffff:127.0.0.1]`` gives 4.

    Example: one socket LISTEN on 127.0.0.1:8080 -> ``{8080: {4}}``.
    """
    out: dict[int, set[int]] = {}
    for s in sockets:
        if s.proto is not Proto.TCP or s.state is not TcpState.LISTEN or s.local.port in skip_ports:
            continue
        addr = s.local.address
        fams: set[int] = set()
        if int(addr) == 0:
            fams = {4} if s.family is Family.INET else ({6} if s.v6only else {4, 6})
        elif isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            fams = {4} if addr.ipv4_mapped.is_loopback else set()
        elif addr.is_loopback:
            fams = {addr.version}
        if fams:
            out.setdefault(s.local.port, set()).update(fams)
    return out


def check_localhost_mismatch(
    res: ResolutionFacts,
    sockets: Iterable[SocketRecord],
    *,
    owners: dict[int, str] | None = None,
    skip_ports: Sequence[int] = (),
) -> CheckResult:
    """Ports a ``localhost`` client reaches only on its second try (or never).

    For every TCP listener reachable over loopback: if the first address ``localhost`` resolves to is of
    a family the listener does not accept, warn when the other family is in the answer (clients with a
    fallback work, slowly; clients without fail) and fail when it is not (every client fails).

    Args:
        res: resolution facts.
        sockets: the namespace's real socket table.
        owners: port -> process label, for the evidence.
        skip_ports: ports to ignore (the doctor's own echo listeners).
    """
    base = partial(
        CheckResult,
        id="resolve.mismatch",
        rung=1,
        title="localhost order vs listeners",
        depends_on=("resolve.localhost",),
    )
    fams = listener_families(sockets, skip_ports=skip_ports)
    if not res.order:
        return base(verdict=Verdict.SKIPPED, evidence="localhost does not resolve")
    first = _version(res.order[0])
    resolved = {_version(a) for a in res.order}
    misses: list[str] = []
    hard = False
    for port in sorted(fams):
        if first in fams[port]:
            continue
        who = f" ({owners[port]})" if owners and port in owners else ""
        where = "127.0.0.1" if 4 in fams[port] else "::1"
        misses.append(f"{port}{who} listens on {where} only")
        hard = hard or not (resolved & fams[port])
    first_s = "::1" if first == 6 else "127.0.0.1"
    data = {"first": str(res.order[0]), "ports": {str(p): sorted(v) for p, v in fams.items()}}
    if not misses:
        evidence = (
            f"localhost -> {first_s} first; all {len(fams)} loopback TCP listener ports accept it"
            if fams
            else f"localhost -> {first_s} first; no loopback TCP listener to compare"
        )
        return base(verdict=Verdict.OK, evidence=evidence, data=data)
    other = "127.0.0.1" if first == 6 else "::1"
    evidence = f"localhost resolves to {first_s} first, but " + "; ".join(misses[:6])
    if len(misses) > 6:
        evidence += f"; and {len(misses) - 6} more"
    if hard:
        evidence += f"; {other} is not in the answer at all, so every localhost client fails"
    else:
        evidence += f"; clients that do not fall back to {other} get 'connection refused'"
    remedy = (
        f"bind the service to both families ([::] with IPV6_V6ONLY off, or {first_s} as well), or "
        f"connect to {other} explicitly instead of 'localhost'"
    )
    code = (
        "LOCALHOST_V6_FIRST_LISTENER_V4_ONLY"
        if first == 6
        else "LOCALHOST_V4_FIRST_LISTENER_V6_ONLY"
    )
    return base(
        verdict=Verdict.FAIL if hard else Verdict.WARN,
        evidence=evidence,
        service_level=True,
        remedy=remedy,
        code=code,
        data=data,
    )

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

__all__ = [
    "check_listener_families",
    "check_localhost",
    "check_localhost_mismatch",
    "listener_families",
    "parse_hosts",
]


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


def _first_family(res: ResolutionFacts) -> tuple[int, set[int]]:
    """IP version of the first address ``localhost`` resolves to, and every version in the answer."""
    return _version(res.order[0]), {_version(a) for a in res.order}


def _family_misses(res: ResolutionFacts, fams: dict[int, set[int]]) -> list[tuple[int, set[int]]]:
    """Ports whose listeners do not accept the family ``localhost`` resolves to first."""
    first, _ = _first_family(res)
    return [(port, fams[port]) for port in sorted(fams) if first not in fams[port]]


def check_localhost_mismatch(
    res: ResolutionFacts,
    sockets: Iterable[SocketRecord],
    *,
    skip_ports: Sequence[int] = (),
) -> CheckResult:
    """The stack's side of ``localhost`` vs the listeners: which family comes first, which ports take it.

    A listener bound to one family while ``localhost`` resolves to the other is that service's problem,
    judged by :func:`check_listener_families` (one check and finding per service); this check stays ok
    and counts them, so the loopback stack rung fails only for faults of the stack.

    Args:
        res: resolution facts.
        sockets: the namespace's real socket table.
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
    first, _ = _first_family(res)
    first_s = "::1" if first == 6 else "127.0.0.1"
    misses = _family_misses(res, fams)
    data = {
        "first": str(res.order[0]),
        "ports": {str(p): sorted(v) for p, v in fams.items()},
        "other_family_only": [p for p, _ in misses],
    }
    if not fams:
        evidence = f"localhost -> {first_s} first; no loopback TCP listener to compare"
    elif not misses:
        evidence = (
            f"localhost -> {first_s} first; all {len(fams)} loopback TCP listener ports accept it"
        )
    else:
        ports = ", ".join(str(p) for p, _ in misses[:6]) + (" ..." if len(misses) > 6 else "")
        evidence = (
            f"localhost -> {first_s} first; {len(fams) - len(misses)} of {len(fams)} loopback TCP "
            f"listener ports accept it; {len(misses)} listen on the other family only ({ports}): "
            f"each service's own check says more"
        )
    return base(verdict=Verdict.OK, evidence=evidence, data=data)


def check_listener_families(
    res: ResolutionFacts,
    sockets: Iterable[SocketRecord],
    *,
    owners: dict[int, str] | None = None,
    skip_ports: Sequence[int] = (),
) -> list[CheckResult]:
    """One check per service a ``localhost`` client reaches only on its second try (or never).

    For every TCP port listening on loopback: if the first address ``localhost`` resolves to is of a
    family its listeners do not accept, warn when the other family is in the answer (clients with a
    fallback work, slowly; clients without fail) and fail when it is not (every client fails). Each is
    ``service_level`` with the service as subject (``python3 port 8080/tcp``): the stack is fine, the
    service's bind (or the hosts file) is the thing to change. Ids ``resolve.mismatch.<port>``.

    Args:
        res: resolution facts.
        sockets: the namespace's real socket table.
        owners: port -> process label, for the subject and evidence.
        skip_ports: ports to ignore (the doctor's own echo listeners).

    Returns:
        The failed and warned checks, by port; empty when every port accepts the first family (or
        ``localhost`` does not resolve, which :func:`check_localhost` reports).
    """
    if not res.order:
        return []
    fams = listener_families(sockets, skip_ports=skip_ports)
    first, resolved = _first_family(res)
    first_s, other = ("::1", "127.0.0.1") if first == 6 else ("127.0.0.1", "::1")
    code = (
        "LOCALHOST_V6_FIRST_LISTENER_V4_ONLY"
        if first == 6
        else "LOCALHOST_V4_FIRST_LISTENER_V6_ONLY"
    )
    out = []
    for port, families in _family_misses(res, fams):
        who = (owners or {}).get(port) or "owner unknown"
        where = "127.0.0.1" if 4 in families else "::1"
        hard = not (resolved & families)
        evidence = f"localhost resolves to {first_s} first, but port {port} ({who}) listens on {where} only"
        if hard:
            evidence += f"; {other} is not in the answer at all, so every localhost client fails"
        else:
            evidence += f"; clients that do not fall back to {other} get 'connection refused'"
        remedy = (
            f"bind the service to both families ([::] with IPV6_V6ONLY off, or {first_s} as well), or "
            f"connect to {where} explicitly instead of 'localhost'"
        )
        if hard:
            remedy += f"; or add '{where} localhost' to {res.hosts_path}"
        out.append(
            CheckResult(
                id=f"resolve.mismatch.{port}",
                rung=1,
                title=f"localhost:{port} reaches its listener",
                verdict=Verdict.FAIL if hard else Verdict.WARN,
                evidence=evidence,
                remedy=remedy,
                code=code,
                service_level=True,
                subject=f"{who} port {port}/tcp",
                depends_on=("resolve.localhost",),
                data={"port": port, "first": str(res.order[0]), "families": sorted(families)},
            )
        )
    return out

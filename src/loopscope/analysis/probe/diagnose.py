"""Why an address of a probe failed: the probe results joined with the listener table, the firewall
ruleset and the latency series (pure: values in, findings out).

Codes: ``PROBE_NOTHING_LISTENING``, ``PROBE_LISTENER_IN_OTHER_NETNS``, ``PROBE_NOT_BOUND_TO_ADDRESS``
(listening on 127.0.0.1 only / ::1 only / one host address / [::] with IPV6_V6ONLY),
``PROBE_FIREWALL_BLOCKS``, ``PROBE_ACCEPT_QUEUE_FULL``, ``PROBE_LOCALHOST_FIRST_FAILS``,
``PROBE_TLS_CERT_EXPIRED``, ``PROBE_TLS_CERT_EXPIRING``, ``PROBE_UNEXPLAINED_FAILURE``, and the bench
module's ``NAGLE_DELAYED_ACK_STALL``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from loopscope.analysis.bench.nagle import find_nagle_stall
from loopscope.analysis.firewall.evaluate import Packet, Ruleset, evaluate
from loopscope.analysis.listeners import Listener
from loopscope.analysis.scope import unmap
from loopscope.model import Finding, Proto, Severity
from loopscope.model.probe import AddressResult

__all__ = ["covers", "describe_binds", "diagnose"]

_EXPIRING_S = 14 * 86400


def covers(listener: Listener, address: str) -> bool:
    """True when a TCP connection to ``address`` reaches ``listener``'s bind address.

    ``0.0.0.0`` covers every IPv4 address, ``[::]`` every IPv6 one and IPv4 too unless IPV6_V6ONLY;
    a specific bind covers only itself (IPv4-mapped binds count as IPv4).

    Example: ``covers(<listener on 127.0.0.1:80>, "192.0.2.5") is False``.
    """
    addr = unmap(ipaddress.ip_address(address.split("%")[0]))
    bind = listener.local.address
    if int(bind) == 0:
        if bind.version == 4:
            return addr.version == 4
        return addr.version == 6 or listener.v6only is not True
    return unmap(bind) == addr


def describe_binds(listeners: Sequence[Listener]) -> str:
    """``127.0.0.1:8080 (python3 pid 42)``, joined by ``, ``."""
    parts = []
    for li in listeners:
        who = ", ".join(f"{p.comm} pid {p.pid}" for p in li.owners[:3])
        v6 = " IPV6_V6ONLY" if li.v6only and int(li.local.address) == 0 else ""
        parts.append(f"{li.local}{v6}" + (f" ({who})" if who else ""))
    return ", ".join(parts)


def _bind_remedy(binds: Sequence[Listener], address: str) -> str:
    version = ipaddress.ip_address(address.split("%")[0]).version
    loop_only = all(unmap(li.local.address).is_loopback for li in binds)
    if loop_only and not ipaddress.ip_address(address.split("%")[0]).is_loopback:
        return (
            "bind to 0.0.0.0 or the host address if it must be reachable (it is loopback-only now)"
        )
    if version == 6 and ipaddress.ip_address(address.split("%")[0]).is_loopback:
        return "also listen on [::1] (or [::] for all IPv6 addresses): clients that resolve localhost to ::1 fail"
    if version == 6:
        return "listen on [::] (or this IPv6 address) if it must be reachable over IPv6"
    return (
        "also listen on 127.0.0.1 (or 0.0.0.0), or on [::] with IPV6_V6ONLY off for both families"
    )


def diagnose(
    results: Sequence[AddressResult],
    *,
    port: int,
    listeners: Sequence[Listener],
    other_netns: Sequence[Listener] = (),
    ruleset: Ruleset | None = None,
    latencies_ns: dict[str, list[int]] | None = None,
    subject: str | None = None,
) -> list[Finding]:
    """Explain each failed address, and flag slow patterns.

    Args:
        results: probe results per candidate address.
        port: the TCP port probed.
        listeners: every listener of the probing namespace (any port; filtered here).
        other_netns: listeners of other namespaces (to say "it listens in netns X").
        ruleset: the firewall rules of the probing namespace, None when not read.
        latencies_ns: per address, request latencies (for the Nagle check), nanoseconds.
        subject: label for findings; default ``port N/tcp``.

    Returns:
        Findings, most severe first.
    """
    subject = subject or f"port {port}/tcp"
    here = [li for li in listeners if li.proto is Proto.TCP and li.local.port == port]
    findings: list[Finding] = []
    failed = [r for r in results if r.attempts and not r.ok]
    refused_or_timeout = [r for r in failed if r.first.phase == "connect"]
    if refused_or_timeout and not here:
        elsewhere = [li for li in other_netns if li.proto is Proto.TCP and li.local.port == port]
        if elsewhere:
            names = sorted({li.netns_label for li in elsewhere})
            findings.append(
                Finding(
                    code="PROBE_LISTENER_IN_OTHER_NETNS",
                    severity=Severity.HIGH,
                    subject=subject,
                    evidence=f"nothing listens on port {port} in this namespace; it listens in netns "
                    f"{', '.join(names)}: {describe_binds(elsewhere)}",
                    remedy="probe from inside that namespace (ip netns exec NAME / nsenter -n -t PID), publish the "
                    "port to the host (container port mapping), or run the service in the host namespace",
                )
            )
        else:
            findings.append(
                Finding(
                    code="PROBE_NOTHING_LISTENING",
                    severity=Severity.HIGH,
                    subject=subject,
                    evidence=f"no TCP listener on port {port}; connects got "
                    f"{', '.join(sorted({r.first.error or '?' for r in refused_or_timeout}))}",
                    remedy="start the service, or check its configured port (ss -ltnp / loopscope ports)",
                )
            )
    for r in failed:
        att = r.first
        addr = r.candidate.address
        if att.phase != "connect" or not here:
            if att.phase != "connect":
                findings.append(
                    Finding(
                        code="PROBE_UNEXPLAINED_FAILURE",
                        severity=Severity.MEDIUM,
                        subject=f"{r.candidate.label} {subject}",
                        evidence=f"connected, then {att.phase} failed: {att.error}",
                        remedy="check the protocol (http vs https vs other) and the server's logs",
                    )
                )
            continue
        covering = [li for li in here if covers(li, addr)]
        verdict = None
        if ruleset is not None:
            version = ipaddress.ip_address(addr.split("%")[0]).version
            verdict = evaluate(
                ruleset, Packet(proto="tcp", version=version, daddr=addr, dport=port)
            )
        if verdict is not None and verdict.blocked:
            findings.append(
                Finding(
                    code="PROBE_FIREWALL_BLOCKS",
                    severity=Severity.HIGH,
                    subject=f"{r.candidate.label} {subject}",
                    evidence=f"connect to {addr} got {att.error}; firewall: {verdict.evidence}",
                    remedy="remove or narrow the rule, or add an accept for this port on lo before it",
                )
            )
            continue
        if not covering:
            findings.append(
                Finding(
                    code="PROBE_NOT_BOUND_TO_ADDRESS",
                    severity=Severity.MEDIUM,
                    subject=f"{r.candidate.label} {subject}",
                    evidence=f"connect to {addr} got {att.error}: port {port} listens on {describe_binds(here)} only",
                    remedy=_bind_remedy(here, addr),
                )
            )
            continue
        full = [
            li
            for li in covering
            if li.backlog and li.accept_queue is not None and li.accept_queue >= li.backlog
        ]
        if full:
            li = full[0]
            findings.append(
                Finding(
                    code="PROBE_ACCEPT_QUEUE_FULL",
                    severity=Severity.HIGH,
                    subject=f"{r.candidate.label} {subject}",
                    evidence=f"connect to {addr} got {att.error}; listener {li.local} has {li.accept_queue} connections "
                    f"waiting for accept() with backlog {li.backlog}: new SYNs are dropped",
                    remedy="the server is not calling accept() fast enough (stuck or overloaded); raise its listen() "
                    "backlog and net.core.somaxconn only after fixing that",
                )
            )
            continue
        maybe = (
            f"; rules that may match: {verdict.evidence}"
            if verdict is not None and verdict.possible
            else ""
        )
        findings.append(
            Finding(
                code="PROBE_UNEXPLAINED_FAILURE",
                severity=Severity.MEDIUM,
                subject=f"{r.candidate.label} {subject}",
                evidence=f"connect to {addr} got {att.error} although {describe_binds(covering)} listens{maybe}",
                remedy="check firewall rules (nft list ruleset), SO_BINDTODEVICE, and the server's state",
            )
        )
    local = [r for r in results if "localhost #" in r.candidate.label]
    ordered = sorted(
        local, key=lambda r: int(r.candidate.label.split("localhost #", 1)[1].split(")")[0])
    )
    if len(ordered) > 1 and not ordered[0].ok and any(r.ok for r in ordered[1:]):
        findings.append(
            Finding(
                code="PROBE_LOCALHOST_FIRST_FAILS",
                severity=Severity.MEDIUM,
                subject=f"localhost {subject}",
                evidence=f"localhost resolves first to {ordered[0].candidate.address}, which fails "
                f"({ordered[0].first.error}); a later address works",
                remedy="listen on both 127.0.0.1 and ::1, or point clients at the working literal address; clients "
                "that try only the first address (many do) fail or wait for a timeout",
            )
        )
    for r in results:
        tls = next((a.tls for a in r.attempts if a.tls is not None), None)
        if tls is not None and tls.expires_in_s is not None and tls.expires_in_s < _EXPIRING_S:
            expired = tls.expires_in_s < 0
            findings.append(
                Finding(
                    code="PROBE_TLS_CERT_EXPIRED" if expired else "PROBE_TLS_CERT_EXPIRING",
                    severity=Severity.HIGH if expired else Severity.LOW,
                    subject=f"{r.candidate.label} {subject}",
                    evidence=f"certificate {tls.subject} expires {tls.not_after} ({tls.expires_in_s / 86400:.1f} days)",
                    remedy="renew the certificate",
                )
            )
            break
    for addr, lats in (latencies_ns or {}).items():
        nagle = find_nagle_stall(lats, subject=f"requests to {addr} {subject}")
        if nagle is not None:
            findings.append(nagle)
            break
    findings.sort(key=lambda f: -f.severity.rank)
    return findings

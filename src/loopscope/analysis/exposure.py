"""Exposure findings over the listener table (pure).

Codes (stable):
- ``EXPOSED_SENSITIVE_SERVICE``: a database, cache, queue, admin/debug port or container API listens on a
  wildcard or own address. Every clue counts: the owner's process name (when readable: other users'
  processes need root), the service the ``--fingerprint`` exchange identified, the well-known port.
- ``SPLIT_FAMILY_BINDING``: the same port is loopback-only in one address family and reachable from other
  hosts in the other (``127.0.0.1:6379`` and ``[::]:6379``): the isolation people meant is half there.
- ``LOCALHOST_SINGLE_FAMILY``: a port listens only on 127.0.0.1 or only on ::1; a client that resolves
  ``localhost`` to the other family gets "connection refused".
- ``ACCEPT_QUEUE_FULL``: a TCP listener's accept queue is at its backlog: new connections are dropped.

A listener without a finding gets the verdict ``ok`` only when something says what it is
(:func:`verdict_without_finding`); a wildcard listener of an unreadable process on an unremarkable port,
not fingerprinted, is ``unknown``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from loopscope.analysis.listeners import Listener, find_listeners
from loopscope.model import Family, Finding, Proto, Scope, Severity, Snapshot

__all__ = [
    "PUBLIC_PORTS",
    "SENSITIVE_FINGERPRINTS",
    "SENSITIVE_PORTS",
    "SENSITIVE_PROCESSES",
    "SensitiveService",
    "check_exposure",
    "listener_key",
    "sensitive_service_of",
    "verdict_without_finding",
]


@dataclass(frozen=True, slots=True)
class SensitiveService:
    """Why a listener is sensitive."""

    name: str
    """Service name, e.g. ``Redis``."""
    severity: Severity
    """How bad exposure is."""
    note: str
    """What an attacker gets, in a few words."""


_DB = Severity.HIGH
_CRIT = Severity.CRITICAL
SENSITIVE_PORTS: dict[tuple[Proto, int], SensitiveService] = {
    (Proto.TCP, 6379): SensitiveService(
        "Redis", _DB, "often no auth; CONFIG SET leads to code execution"
    ),
    (Proto.TCP, 5432): SensitiveService("PostgreSQL", _DB, "database"),
    (Proto.TCP, 3306): SensitiveService("MySQL/MariaDB", _DB, "database"),
    (Proto.TCP, 27017): SensitiveService("MongoDB", _DB, "database, often no auth"),
    (Proto.TCP, 9200): SensitiveService("Elasticsearch", _DB, "search index HTTP API"),
    (Proto.TCP, 11211): SensitiveService("memcached", _DB, "cache, no auth"),
    (Proto.UDP, 11211): SensitiveService("memcached UDP", _CRIT, "no auth, DDoS amplification"),
    (Proto.TCP, 2375): SensitiveService("Docker API (plain)", _CRIT, "root on the host"),
    (Proto.TCP, 2376): SensitiveService("Docker API (TLS)", _DB, "root on the host if certs leak"),
    (Proto.TCP, 2379): SensitiveService("etcd", _DB, "cluster secrets"),
    (Proto.TCP, 5672): SensitiveService("AMQP (RabbitMQ)", _DB, "message queue"),
    (Proto.TCP, 15672): SensitiveService("RabbitMQ management", _DB, "admin UI"),
    (Proto.TCP, 9092): SensitiveService("Kafka", _DB, "message log"),
    (Proto.TCP, 2181): SensitiveService("ZooKeeper", _DB, "coordination, no auth by default"),
    (Proto.TCP, 8500): SensitiveService("Consul HTTP API", _DB, "service catalogue, KV"),
    (Proto.TCP, 10250): SensitiveService("kubelet API", _CRIT, "exec into pods"),
    (Proto.TCP, 5984): SensitiveService("CouchDB", _DB, "database"),
    (Proto.TCP, 9042): SensitiveService("Cassandra", _DB, "database"),
    (Proto.TCP, 8086): SensitiveService("InfluxDB", _DB, "database"),
    (Proto.TCP, 1433): SensitiveService("SQL Server", _DB, "database"),
    (Proto.TCP, 1521): SensitiveService("Oracle listener", _DB, "database"),
    (Proto.TCP, 6060): SensitiveService("Go pprof/debug", _DB, "debug endpoints"),
    (Proto.TCP, 9229): SensitiveService("Node.js inspector", _CRIT, "code execution"),
    (Proto.TCP, 5005): SensitiveService("Java JDWP debugger", _CRIT, "code execution"),
    (Proto.TCP, 4369): SensitiveService("Erlang epmd", _DB, "Erlang distribution"),
    (Proto.TCP, 5900): SensitiveService("VNC", _DB, "remote desktop"),
    (Proto.TCP, 111): SensitiveService("rpcbind", Severity.MEDIUM, "RPC port mapper"),
    (Proto.TCP, 9090): SensitiveService(
        "Prometheus / admin UI", Severity.MEDIUM, "metrics and admin API"
    ),
}

SENSITIVE_PROCESSES: dict[str, SensitiveService] = {
    "redis-server": SENSITIVE_PORTS[(Proto.TCP, 6379)],
    "postgres": SENSITIVE_PORTS[(Proto.TCP, 5432)],
    "mysqld": SENSITIVE_PORTS[(Proto.TCP, 3306)],
    "mariadbd": SENSITIVE_PORTS[(Proto.TCP, 3306)],
    "mongod": SENSITIVE_PORTS[(Proto.TCP, 27017)],
    "memcached": SENSITIVE_PORTS[(Proto.TCP, 11211)],
    "dockerd": SENSITIVE_PORTS[(Proto.TCP, 2375)],
    "etcd": SENSITIVE_PORTS[(Proto.TCP, 2379)],
    "beam.smp": SENSITIVE_PORTS[(Proto.TCP, 5672)],
    "kubelet": SENSITIVE_PORTS[(Proto.TCP, 10250)],
    "influxd": SENSITIVE_PORTS[(Proto.TCP, 8086)],
}


SENSITIVE_FINGERPRINTS: dict[str, SensitiveService] = {
    "redis": SENSITIVE_PORTS[(Proto.TCP, 6379)],
    "postgresql": SENSITIVE_PORTS[(Proto.TCP, 5432)],
    "mysql": SENSITIVE_PORTS[(Proto.TCP, 3306)],
    "memcached": SENSITIVE_PORTS[(Proto.TCP, 11211)],
    "mongodb": SENSITIVE_PORTS[(Proto.TCP, 27017)],
    "amqp": SENSITIVE_PORTS[(Proto.TCP, 5672)],
    "vnc": SENSITIVE_PORTS[(Proto.TCP, 5900)],
}
"""Fingerprint service names (:class:`loopscope.model.probe.Fingerprint` ``service``) that are sensitive."""

PUBLIC_PORTS: dict[tuple[Proto, int], str] = {
    (Proto.TCP, 22): "ssh",
    (Proto.TCP, 25): "smtp",
    (Proto.TCP, 53): "dns",
    (Proto.TCP, 80): "http",
    (Proto.TCP, 110): "pop3",
    (Proto.TCP, 143): "imap",
    (Proto.TCP, 443): "https",
    (Proto.TCP, 465): "smtps",
    (Proto.TCP, 587): "submission",
    (Proto.TCP, 993): "imaps",
    (Proto.TCP, 995): "pop3s",
    (Proto.UDP, 53): "dns",
    (Proto.UDP, 67): "dhcp server",
    (Proto.UDP, 68): "dhcp client",
    (Proto.UDP, 123): "ntp",
    (Proto.UDP, 443): "http/3",
    (Proto.UDP, 546): "dhcpv6 client",
    (Proto.UDP, 547): "dhcpv6 server",
    (Proto.UDP, 5353): "mdns",
}
"""Well-known ports of services meant to face other hosts: on them, an unreadable owner is no mystery."""

_UNIDENTIFIED = ("", "unknown", "closed")


def listener_key(listener: Listener) -> str:
    """``"0.0.0.0:6379/tcp"``: how ``ports`` keys a listener (fingerprints, findings' subjects)."""
    return f"{listener.local}/{listener.proto}"


def sensitive_service_of(
    listener: Listener, fingerprint: str | None = None
) -> SensitiveService | None:
    """The sensitive service behind a listener, from every clue: process name, fingerprint, port.

    Args:
        listener: the listener.
        fingerprint: the service the ``--fingerprint`` exchange named (``redis``, ``http``...), if run.

    Returns:
        The first sensitive match in that order, or None when no clue points at one.
    """
    for name in listener.process_names:
        if name in SENSITIVE_PROCESSES:
            return SENSITIVE_PROCESSES[name]
    if fingerprint in SENSITIVE_FINGERPRINTS:
        return SENSITIVE_FINGERPRINTS[fingerprint]
    return SENSITIVE_PORTS.get((listener.proto, listener.local.port))


def _clue(listener: Listener, fingerprint: str | None) -> str:
    """Which clue named the sensitive service, in words."""
    if any(n in SENSITIVE_PROCESSES for n in listener.process_names):
        return "by process name"
    if fingerprint in SENSITIVE_FINGERPRINTS:
        return f"by fingerprint '{fingerprint}'"
    return "by well-known port"


def verdict_without_finding(
    listener: Listener, fingerprint: str | None = None
) -> Literal["ok", "unknown"]:
    """Verdict of a listener that has no finding: ``ok`` when a clue says what it is, else ``unknown``.

    A loopback (or foreign-address) listener is ``ok``: no other host reaches it. A wildcard or own-address
    listener is ``ok`` when its owner is known (a process name that is not sensitive), the fingerprint
    identified a service, or its port is a public well-known one (:data:`PUBLIC_PORTS`); otherwise (other
    users' processes without root, not fingerprinted, an arbitrary port) nobody can tell: ``unknown``.

    Args:
        listener: the listener.
        fingerprint: the service ``--fingerprint`` named, if run.
    """
    if listener.scope not in (Scope.WILDCARD, Scope.OWN_ADDRESS):
        return "ok"
    if listener.owners or fingerprint not in (None, *_UNIDENTIFIED):
        return "ok"
    return "ok" if (listener.proto, listener.local.port) in PUBLIC_PORTS else "unknown"


def _subject(listener: Listener) -> str:
    who = ",".join(listener.process_names) or "unknown process"
    return f"{who} {listener.local}/{listener.proto}"


def _reaches_v4_loopback(listener: Listener) -> bool:
    if listener.family is Family.INET:
        return listener.scope in (Scope.LOOPBACK, Scope.WILDCARD) and (
            listener.scope is Scope.WILDCARD or str(listener.local.address) == "127.0.0.1"
        )
    return listener.scope is Scope.WILDCARD and listener.v6only is False


def _reaches_v6_loopback(listener: Listener) -> bool:
    return listener.family is Family.INET6 and (
        listener.scope is Scope.WILDCARD or str(listener.local.address) == "::1"
    )


def check_exposure(
    snapshot: Snapshot,
    listeners: list[Listener] | None = None,
    fingerprints: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Findings for one namespace's listeners, most severe first.

    Args:
        snapshot: the namespace.
        listeners: its listeners if already computed (:func:`find_listeners`).
        fingerprints: :func:`listener_key` -> fingerprint service name (``redis``), from
            ``ports --fingerprint``; a clue that holds when the owner is unreadable and the port is odd.
    """
    rows = listeners if listeners is not None else find_listeners(snapshot)
    findings: list[Finding] = []
    by_port: dict[tuple[Proto, int], list[Listener]] = defaultdict(list)
    for row in rows:
        by_port[(row.proto, row.local.port)].append(row)
        fingerprint = (fingerprints or {}).get(listener_key(row))
        service = sensitive_service_of(row, fingerprint)
        if service is not None and row.scope in (Scope.WILDCARD, Scope.OWN_ADDRESS):
            findings.append(
                Finding(
                    code="EXPOSED_SENSITIVE_SERVICE",
                    severity=service.severity,
                    subject=_subject(row),
                    evidence=f"{service.name} ({service.note}) listens on {row.local} ({row.scope}: {row.reach}); "
                    f"identified {_clue(row, fingerprint)}",
                    remedy=(
                        f"bind it to 127.0.0.1 (or ::1) if only local clients use it; otherwise require "
                        f"authentication and firewall port {row.local.port} to the hosts that need it"
                    ),
                    netns=snapshot.netns,
                )
            )
        if (
            row.proto is Proto.TCP
            and row.backlog is not None
            and row.accept_queue is not None
            and row.backlog > 0
            and row.accept_queue >= row.backlog
        ):
            findings.append(
                Finding(
                    code="ACCEPT_QUEUE_FULL",
                    severity=Severity.HIGH,
                    subject=_subject(row),
                    evidence=f"accept queue {row.accept_queue} of backlog {row.backlog}",
                    remedy="the server is not calling accept() fast enough: add workers, or raise listen() "
                    "backlog and net.core.somaxconn for bursts",
                    netns=snapshot.netns,
                )
            )
    stack = snapshot.stack
    ipv6_off = bool(stack.ipv6_disabled_all or stack.ipv6_disabled_lo)
    for (proto, port), group in sorted(by_port.items(), key=lambda kv: kv[0][1]):
        scopes = {(r.family, r.scope) for r in group}
        for loop_family, other_family in ((Family.INET, Family.INET6), (Family.INET6, Family.INET)):
            only_loop = {s for f, s in scopes if f is loop_family} == {Scope.LOOPBACK}
            reachable = {Scope.WILDCARD, Scope.OWN_ADDRESS}
            other_open = {s for f, s in scopes if f is other_family} & reachable
            if only_loop and other_open:
                names = (
                    ",".join(sorted({n for r in group for n in r.process_names}))
                    or "unknown process"
                )
                binds = ", ".join(str(r.local) for r in group)
                findings.append(
                    Finding(
                        code="SPLIT_FAMILY_BINDING",
                        severity=Severity.MEDIUM,
                        subject=f"{names} port {port}/{proto}",
                        evidence=f"bound to {binds}: loopback-only for {loop_family}, "
                        f"reachable from other hosts over {other_family}",
                        remedy="bind both families to loopback (127.0.0.1 and ::1) or both to the intended "
                        "address; check IPV6_V6ONLY on the [::] socket",
                        netns=snapshot.netns,
                    )
                )
        if proto is not Proto.TCP or not all(r.scope is Scope.LOOPBACK for r in group):
            continue
        v4 = any(_reaches_v4_loopback(r) for r in group)
        v6 = any(_reaches_v6_loopback(r) for r in group)
        if v4 == v6 or (v4 and ipv6_off):
            continue
        names = ",".join(sorted({n for r in group for n in r.process_names})) or "unknown process"
        bound, missing = ("127.0.0.1", "::1") if v4 else ("::1", "127.0.0.1")
        findings.append(
            Finding(
                code="LOCALHOST_SINGLE_FAMILY",
                severity=Severity.LOW,
                subject=f"{names} port {port}/tcp",
                evidence=f"listens on {bound} only; a client connecting to localhost:{port} that tries "
                f"{missing} first gets 'connection refused' (or a fallback delay)",
                remedy=f"also bind {missing}, or make clients use {bound} instead of 'localhost'",
                netns=snapshot.netns,
            )
        )
    findings.sort(key=lambda f: (-f.severity.rank, f.code, f.subject))
    return findings

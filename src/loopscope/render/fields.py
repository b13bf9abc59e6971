"""One field registry: name, column header, unit and description of every column loopscope shows.

CLI tables, JSON documentation and Prometheus HELP read it, so a unit is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EDGE_FIELDS",
    "FINDING_FIELDS",
    "GAP_FIELDS",
    "LISTENER_FIELDS",
    "FieldSpec",
    "field_by_name",
]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One column."""

    name: str
    """Key in rows and JSON."""
    header: str
    """Table header."""
    unit: str
    """Unit: ``""`` for counts and labels, else ``bytes``, ``ns``, ``us``, ``connections``..."""
    description: str
    """What it is and where it comes from."""
    justify: str = "left"
    """Table alignment."""


LISTENER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("proto", "Proto", "", "tcp or udp"),
    FieldSpec("address", "Address", "", "bind address ([::] and 0.0.0.0 are wildcards)"),
    FieldSpec("port", "Port", "", "bind port", "right"),
    FieldSpec("scope", "Scope", "", "loopback / wildcard / host (an address of this host) / other"),
    FieldSpec("reach", "Reachable from", "", "who can connect, from scope and IPV6_V6ONLY"),
    FieldSpec("process", "Process", "", "comm[pid,...] of the processes holding the socket"),
    FieldSpec("user", "User", "", "owner of the socket (uid name)"),
    FieldSpec(
        "queue",
        "AcceptQ",
        "connections",
        "accept queue length / backlog (inet_diag idiag_rqueue / idiag_wqueue)",
        "right",
    ),
    FieldSpec("netns", "Netns", "", "network namespace label"),
    FieldSpec("service", "Service", "", "fingerprint of what answers (ports --fingerprint)"),
    FieldSpec("verdict", "Verdict", "", "worst finding code on this listener, or ok"),
)

EDGE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "client", "Client", "", "client process comm[pid] (? when unknown: TIME_WAIT or other user)"
    ),
    FieldSpec("server", "Server", "", "listener owners comm[pid,...]"),
    FieldSpec("port", "Port", "", "server port", "right"),
    FieldSpec("proto", "Proto", "", "tcp or udp"),
    FieldSpec("connections", "Conns", "connections", "connections on the edge right now", "right"),
    FieldSpec("states", "States", "", "connections by state of the client end"),
    FieldSpec(
        "self_call", "Self", "", "SELF when the client is the server app itself (a self-call)"
    ),
)

FINDING_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("severity", "Severity", "", "info < low < medium < high < critical"),
    FieldSpec("code", "Code", "", "stable finding code"),
    FieldSpec("subject", "Subject", "", "what it is about"),
    FieldSpec("evidence", "Evidence", "", "what was read"),
    FieldSpec("remedy", "Remedy", "", "what to do"),
)

GAP_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("what", "What", "", "what is missing"),
    FieldSpec("reason", "Why", "", "why, and the remedy"),
)


def field_by_name(fields: tuple[FieldSpec, ...], name: str) -> FieldSpec:
    """Look a field up by name.

    Raises:
        KeyError: unknown name.
    """
    for spec in fields:
        if spec.name == name:
            return spec
    raise KeyError(name)

"""Rows for tables and JSON: pure functions from analysis results to ``dict[str, str | int]``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from loopscope.analysis.apps import process_label
from loopscope.analysis.exposure import verdict_without_finding

if TYPE_CHECKING:  # types only: `ports` renders listeners without importing the talk map
    from loopscope.analysis.listeners import Listener
    from loopscope.analysis.stack import StackSummary
    from loopscope.analysis.talkmap import TalkEdge
    from loopscope.model import Finding

__all__ = [
    "finding_rows",
    "listener_rows",
    "stack_lines",
    "talk_edge_rows",
    "verdicts_by_listener",
]


SHORT_VERDICTS = {
    "EXPOSED_SENSITIVE_SERVICE": "EXPOSED",
    "SPLIT_FAMILY_BINDING": "SPLIT-FAMILY",
    "LOCALHOST_SINGLE_FAMILY": "ONE-FAMILY",
    "ACCEPT_QUEUE_FULL": "QUEUE-FULL",
}


def verdicts_by_listener(findings: Iterable[Finding]) -> dict[str, str]:
    """Map a finding subject's ``address/proto`` or ``port N/proto`` part to the worst finding, shortened:
    ``"high EXPOSED"`` (the Findings list below a table gives the full code)."""
    out: dict[str, tuple[int, str]] = {}
    for f in findings:
        key = f.subject.rsplit(" ", 1)[-1]
        if key not in out or f.severity.rank > out[key][0]:
            out[key] = (f.severity.rank, f"{f.severity.value} {SHORT_VERDICTS.get(f.code, f.code)}")
    return {k: v[1] for k, v in out.items()}


def listener_rows(
    listeners: Iterable[Listener],
    findings: Iterable[Finding] = (),
    services: Mapping[str, str] | None = None,
    users: Mapping[int, str] | None = None,
) -> list[dict[str, str | int]]:
    """One row per listener with the LISTENER_FIELDS keys.

    Args:
        listeners: rows to show.
        findings: exposure findings; the worst code for a listener fills ``verdict``, else ``ok`` or
            ``unknown`` (:func:`loopscope.analysis.exposure.verdict_without_finding`).
        services: ``"addr:port/proto" -> fingerprint`` (from ``ports --fingerprint``).
        users: uid -> name for socket owners without a known process.
    """
    verdicts = verdicts_by_listener(findings)
    rows: list[dict[str, str | int]] = []
    for row in listeners:
        key = f"{row.local}/{row.proto}"
        port_key = f"{row.local.port}/{row.proto}"
        user = next((p.user for p in row.owners if p.user), None)
        if user is None and row.uid is not None:
            user = (users or {}).get(row.uid, str(row.uid))
        queue = "" if row.backlog is None else f"{row.accept_queue}/{row.backlog}"
        rows.append(
            {
                "proto": row.proto.value,
                "address": str(row.local.address)
                if row.family.value == "inet"
                else f"[{row.local.address}]",
                "port": row.local.port,
                "scope": row.scope.value,
                "reach": row.reach,
                "process": process_label(row.owners) if row.owners else "-",
                "user": user or "-",
                "queue": queue,
                "netns": row.netns_label,
                "service": (services or {}).get(key, ""),
                "verdict": verdicts.get(key)
                or verdicts.get(port_key)
                or verdict_without_finding(
                    row, ((services or {}).get(key) or "").split(" ", 1)[0] or None
                ),
            }
        )
    return rows


_SHORT_STATES = {
    "ESTABLISHED": "ESTAB",
    "CLOSE_WAIT": "CLOSE-WAIT",
    "TIME_WAIT": "TIME-WAIT",
}  # as ss prints


def talk_edge_rows(edges: Iterable[TalkEdge]) -> list[dict[str, str | int]]:
    """One row per talk-map edge with the EDGE_FIELDS keys."""
    return [
        {
            "client": e.client,
            "server": e.server,
            "port": e.port or "closed",
            "proto": e.proto.value,
            "connections": e.connections,
            "states": " ".join(
                f"{_SHORT_STATES.get(k, k)}:{v}" for k, v in sorted(e.states.items())
            ),
            "self_call": "SELF" if e.self_call else "",
        }
        for e in edges
    ]


def finding_rows(findings: Iterable[Finding]) -> list[dict[str, str | int]]:
    """One row per finding with the FINDING_FIELDS keys."""
    return [
        {
            "severity": f.severity.value,
            "code": f.code,
            "subject": f.subject,
            "evidence": f.evidence,
            "remedy": f.remedy,
        }
        for f in findings
    ]


def stack_lines(summary: StackSummary, netns_label: str) -> list[tuple[str, str, str]]:
    """``(fact, value, status)`` lines for the scan header; status is ``ok``, ``warn`` or ``fail``."""
    lo = "UP" if summary.lo_up else ("DOWN" if summary.lo_present else "missing")
    v6 = (
        "disabled (" + summary.ipv6_disabled_by + ")"
        if summary.ipv6_disabled_by
        else ("::1 assigned" if summary.has_v6_loopback else "::1 missing")
    )
    eph = "?"
    if summary.ephemeral_range and summary.ephemeral_range_size:
        low, high = summary.ephemeral_range
        eph = f"{low}-{high} ({summary.ephemeral_range_size} ports), {summary.ephemeral_in_use} in use"
        if summary.ephemeral_by_destination:
            dest, count = max(summary.ephemeral_by_destination.items(), key=lambda kv: kv[1])
            eph += f"; most toward {dest}: {count}"
    worst_dest = max(summary.ephemeral_by_destination.values(), default=0)
    size = summary.ephemeral_range_size or 0
    return [
        ("netns", netns_label, "ok"),
        ("lo", f"{lo}, mtu {summary.lo_mtu}", "ok" if summary.lo_up else "fail"),
        (
            "127.0.0.1/8",
            "assigned" if summary.has_127_8 else "missing",
            "ok" if summary.has_127_8 else "fail",
        ),
        (
            "IPv6 loopback",
            v6,
            "ok" if summary.has_v6_loopback or summary.ipv6_disabled_by else "warn",
        ),
        (
            "sockets",
            f"{summary.sockets} ({summary.listeners} listening, {summary.loopback_connections} "
            f"loopback connected, source {summary.source})",
            "ok",
        ),
        ("TIME_WAIT", f"{summary.time_wait} ({summary.time_wait_loopback} loopback)", "ok"),
        ("ephemeral ports", eph, "warn" if size and worst_dest >= 0.2 * size else "ok"),
        ("somaxconn", str(summary.somaxconn), "ok"),
    ]

"""The typer-free half of ``loopscope ports``: the listener JSON shape and the listener filters.

Shared by the typer command (:mod:`loopscope.cli.ports`) and the start-up fast path
(:mod:`loopscope.cli.fastpath`), which runs ``ports --json`` without importing typer or rich, so both
produce the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loopscope.analysis.exposure import check_exposure
from loopscope.analysis.listeners import Listener, find_listeners
from loopscope.errors import UsageError
from loopscope.model import Finding, Gap, Scope, Snapshot
from loopscope.render.jsonable import to_jsonable
from loopscope.render.views import listener_rows

__all__ = [
    "exposure_findings",
    "listener_json",
    "listener_tables",
    "ports_document",
    "ports_tsv",
    "select_listeners",
]

Tables = list[tuple[Snapshot, list[Listener]]]


def listener_tables(snapshots: Sequence[Snapshot]) -> tuple[list[Listener], Tables, list[Gap]]:
    """Every listener of every snapshot (in order), each snapshot with its own listeners (for the
    exposure checks), and the snapshots' gaps without repeats."""
    rows: list[Listener] = []
    gaps: list[Gap] = []
    tables: Tables = []
    for snap in snapshots:
        listeners = find_listeners(snap)
        tables.append((snap, listeners))
        rows += listeners
        gaps += [g for g in snap.gaps if g not in gaps]
    return rows, tables, gaps


def exposure_findings(
    tables: Tables, rows: Sequence[Listener], named: Mapping[str, str]
) -> list[Finding]:
    """The exposure findings of every snapshot, kept only for the listeners in ``rows`` (the ones
    the filters selected); ``named``: fingerprinted service names, a clue for the verdicts."""
    findings: list[Finding] = []
    for snap, listeners in tables:
        findings += check_exposure(snap, listeners, dict(named))
    keep = {f"{r.local}/{r.proto}" for r in rows} | {f"{r.local.port}/{r.proto}" for r in rows}
    return [f for f in findings if f.subject.rsplit(" ", 1)[-1] in keep]


def ports_document(
    snapshots: Sequence[Snapshot],
    rows: Sequence[Listener],
    findings: Sequence[Finding],
    gaps: Sequence[Gap],
    services: Mapping[str, str] | None = None,
    extra: Callable[[Listener], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The body of ``ports --json``: namespaces read, one object per listener (with ``extra(row)``
    keys, e.g. the fingerprint, before its verdict), findings and gaps."""
    verdicts = listener_rows(list(rows), list(findings), dict(services or {}))
    return {
        "netns": [
            {"label": s.netns_label, "id": to_jsonable(s.netns), "source": s.source}
            for s in snapshots
        ],
        "listeners": [
            {**listener_json(r), **(extra(r) if extra else {}), "verdict": v["verdict"]}
            for r, v in zip(rows, verdicts, strict=True)
        ],
        "findings": list(findings),
        "gaps": list(gaps),
    }


def ports_tsv(
    snapshots: Sequence[Snapshot],
    rows: Sequence[Listener],
    findings: Sequence[Finding],
    gaps: Sequence[Gap],
) -> str:
    """What ``ports --format tsv`` writes to stdout, without rich: the listeners, then the findings
    and the gaps when there are any, each a header of field names and one tab-separated line per row,
    tables separated by an empty line (as :func:`loopscope.cli.tables.tsv_lines` writes the typer
    command's tables; same bytes, tested). Every value passes through
    :func:`~loopscope.render.text.printable`; TSV shows every column, empty or not, but ``reach``
    (and ``netns`` for one namespace), as the table does.
    """
    from loopscope.render.fields import FINDING_FIELDS, GAP_FIELDS, LISTENER_FIELDS, FieldSpec
    from loopscope.render.text import printable

    def table(fields: Sequence[FieldSpec], values: Sequence[Mapping[str, object]]) -> str:
        lines = ["\t".join(f.name for f in fields)]
        lines += ["\t".join(printable(str(v.get(f.name, ""))) for f in fields) for v in values]
        return "".join(line + "\n" for line in lines)

    hidden = {"reach"} | ({"netns"} if len(snapshots) == 1 else set())
    listener_fields = [f for f in LISTENER_FIELDS if f.name not in hidden]
    out = [table(listener_fields, listener_rows(list(rows), list(findings), {}))]
    if findings:
        found = [
            {
                "severity": f.severity.value,
                "code": f.code,
                "subject": f.subject,
                "evidence": f.evidence,
                "remedy": f.remedy,
            }
            for f in findings
        ]
        out.append(table(FINDING_FIELDS, found))
    if gaps:
        out.append(table(GAP_FIELDS, [{"what": g.what, "reason": g.reason} for g in gaps]))
    return "\n".join(out)


def listener_json(row: Listener) -> dict[str, Any]:
    """JSON shape of one listener."""
    return {
        "proto": row.proto.value,
        "family": row.family.value,
        "address": str(row.local.address),
        "port": row.local.port,
        "scope": row.scope.value,
        "reach": row.reach,
        "v6only": row.v6only,
        "accept_queue": row.accept_queue,
        "backlog": row.backlog,
        "uid": row.uid,
        "inode": row.inode,
        "netns": row.netns_label,
        "netns_id": to_jsonable(row.netns),
        "processes": [
            {"pid": p.pid, "comm": p.comm, "user": p.user, "uid": p.uid, "cmdline": list(p.cmdline)}
            for p in row.owners
        ],
    }


def select_listeners(
    listeners: list[Listener],
    *,
    port: int | None,
    pid: int | None,
    scope: str | None,
    proto: str | None,
) -> list[Listener]:
    """Filter listeners.

    Raises:
        UsageError: unknown scope/proto value, or nothing matches the port or pid asked for.
    """
    out = listeners
    if scope is not None:
        if scope == "host":
            raise UsageError(
                "scope 'host' is now 'own-address' (one of this host's own addresses; "
                "iproute2's 'scope host' means loopback)"
            )
        try:
            wanted = Scope(scope)
        except ValueError:
            raise UsageError(
                f"unknown scope {scope!r}: use loopback, wildcard, own-address or other"
            ) from None
        out = [r for r in out if r.scope is wanted]
    if proto is not None:
        if proto not in ("tcp", "udp"):
            raise UsageError(f"unknown protocol {proto!r}: use tcp or udp")
        out = [r for r in out if r.proto.value == proto]
    if port is not None:
        if not 0 < port < 65536:
            raise UsageError(f"port {port} out of range 1-65535")
        out = [r for r in out if r.local.port == port]
        if not out:
            raise UsageError(f"nothing listens on port {port}")
    if pid is not None:
        out = [r for r in out if any(p.pid == pid for p in r.owners)]
        if not out:
            raise UsageError(
                f"process {pid} owns no listener (or it does not exist, or is not readable)"
            )
    return out

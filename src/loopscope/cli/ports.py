"""``loopscope ports``: every listener with its scope, owners and exposure verdict."""

from __future__ import annotations

from functools import partial
from typing import Any

import typer

from loopscope.analysis.exposure import check_exposure
from loopscope.analysis.listeners import Listener, find_listeners
from loopscope.cli.common import (
    FailOnOption,
    JsonOption,
    cli_errors,
    console,
    emit_json,
    exit_code_for,
)
from loopscope.cli.options import (
    AllNetnsOption,
    NetnsOption,
    NoProcessesOption,
    SourceOption,
    read_snapshots,
)
from loopscope.errors import UsageError
from loopscope.model import Finding, Gap, Scope, Snapshot
from loopscope.render.fields import LISTENER_FIELDS, FieldSpec
from loopscope.render.jsonable import to_jsonable
from loopscope.render.views import listener_rows

__all__ = ["listener_json", "ports_command", "register", "select_listeners"]


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


@cli_errors
def ports_command(
    netns: str | None = NetnsOption,
    all_netns: bool = AllNetnsOption,
    port: int | None = typer.Option(None, "--port", help="Only this port."),
    pid: int | None = typer.Option(None, "--pid", help="Only listeners owned by this process."),
    scope: str | None = typer.Option(
        None, "--scope", help="Only loopback, wildcard, own-address or other."
    ),
    proto: str | None = typer.Option(None, "--proto", help="Only tcp or udp."),
    fingerprint: bool = typer.Option(
        False, "--fingerprint", help="Identify what answers on each TCP port."
    ),
    verify_exposure: bool = typer.Option(
        False,
        "--verify-exposure",
        help="Root: connect from a throwaway netns over a veth pair to see what is "
        "really reachable from another host, firewall included.",
    ),
    source: str = SourceOption,
    no_processes: bool = NoProcessesOption,
    json_out: bool = JsonOption,
    fail_on: str = FailOnOption,
) -> None:
    """Every listener: proto, bind address, scope, port, process(es), user, netns, verdict."""
    snapshots = read_snapshots(netns, all_netns, source, no_processes, listening_only=True)
    rows: list[Listener] = []
    findings: list[Finding] = []
    gaps: list[Gap] = []
    tables: list[tuple[Snapshot, list[Listener]]] = []
    for snap in snapshots:
        listeners = find_listeners(snap)
        tables.append((snap, listeners))
        rows += listeners
        gaps += [g for g in snap.gaps if g not in gaps]
    rows = select_listeners(rows, port=port, pid=pid, scope=scope, proto=proto)
    services = fingerprint_rows(snapshots, rows) if fingerprint else {}
    named = {k: label.split(" ", 1)[0] for k, label in services.items()}  # a clue for verdicts
    for snap, listeners in tables:
        findings += check_exposure(snap, listeners, named)
    keep = {f"{r.local}/{r.proto}" for r in rows} | {f"{r.local.port}/{r.proto}" for r in rows}
    findings = [f for f in findings if f.subject.rsplit(" ", 1)[-1] in keep]
    outside = outside_view(rows) if verify_exposure else {}
    if json_out:
        emit_json(
            "ports",
            {
                "netns": [
                    {"label": s.netns_label, "id": to_jsonable(s.netns), "source": s.source}
                    for s in snapshots
                ],
                "listeners": [
                    {
                        **listener_json(r),
                        **({"service": services.get(_key(r), "")} if fingerprint else {}),
                        **({"outside": outside.get(_key(r), "")} if verify_exposure else {}),
                        "verdict": v["verdict"],
                    }
                    for r, v in zip(rows, listener_rows(rows, findings, services), strict=True)
                ],
                "findings": findings,
                "gaps": gaps,
            },
        )
    else:
        from loopscope.cli.tables import print_findings, print_gaps, print_table

        out = console()
        table_rows = listener_rows(rows, findings, services)
        hidden = (
            {"reach"}
            | ({"netns"} if len(snapshots) == 1 else set())
            | ({"user"} if fingerprint else set())
        )
        hidden |= (
            {"queue", "scope"} if fingerprint and verify_exposure else set()
        )  # "From outside" is the truth
        fields = tuple(f for f in LISTENER_FIELDS if f.name not in hidden)
        if verify_exposure:
            for row, listener in zip(table_rows, rows, strict=False):
                row["outside"] = outside.get(_key(listener), "")
            fields = (*fields, OUTSIDE_FIELD)
        print_table(out, fields, table_rows, title="Listeners", empty="none")
        if findings:
            print_findings(out, findings)
        print_gaps(out, gaps)
    raise typer.Exit(exit_code_for(findings, fail_on))


OUTSIDE_FIELD = FieldSpec(
    "outside", "From outside", "", "reachable from another host (--verify-exposure)"
)


def _key(row: Listener) -> str:
    return f"{row.local}/{row.proto}"


def _netns_spec(snapshot: Snapshot) -> str | None:
    label = snapshot.netns_label
    if label == "host":
        return None
    return label[4:] if label.startswith("pid ") else label


def fingerprint_rows(snapshots: list[Snapshot], rows: list[Listener]) -> dict[str, str]:
    """``"addr:port/tcp" -> "redis 7.0.15"`` for every TCP listener, each probed inside its own netns."""
    from loopscope.backends.linux.netns import resolve_netns, run_in_netns
    from loopscope.probes.fingerprint import fingerprint_listeners

    out: dict[str, str] = {}
    for snap in snapshots:
        mine = [r for r in rows if r.netns == snap.netns and r.proto.value == "tcp"]
        if not mine:
            continue
        endpoints = [r.local for r in mine]
        prints = run_in_netns(
            resolve_netns(_netns_spec(snap)), partial(fingerprint_listeners, endpoints)
        )
        for row, fp in zip(mine, prints, strict=False):
            out[f"{_key(row)}@{snap.netns_label}"] = fp.label
    return {k.rsplit("@", 1)[0]: v for k, v in out.items()}


def outside_view(rows: list[Listener]) -> dict[str, str]:
    """``"addr:port/tcp" -> "reachable"`` / ``"blocked: <rule>"`` / ``"refused"`` from a throwaway netns.

    Raises:
        BackendUnavailable: not root, or the namespace could not be made.
    """
    from loopscope.backends.linux.netns import current_netns
    from loopscope.probes.exposure import verify_exposure

    host = [r for r in rows if r.netns == current_netns()]
    out: dict[str, str] = {}
    for result in verify_exposure(host):
        key = f"{result.bind}/{result.proto}"
        word = (
            "reachable"
            if result.reachable
            else (f"blocked: {result.firewall}" if result.firewall else result.outcome)
        )
        if result.reachable or key not in out:
            out[key] = word
    return out


def register(app: typer.Typer) -> None:
    """Add ``ports`` to the app."""
    app.command("ports")(ports_command)

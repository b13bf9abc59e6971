"""``loopscope ports``: every listener with its scope, owners and exposure verdict."""

from __future__ import annotations

from functools import partial

import typer

from loopscope.analysis.listeners import Listener
from loopscope.cli.common import (
    FailOnOption,
    FormatOption,
    JsonOption,
    WideOption,
    cli_errors,
    console,
    emit_json,
    exit_code_for,
)
from loopscope.cli.listing import (
    exposure_findings,
    listener_tables,
    ports_document,
    select_listeners,
)
from loopscope.cli.options import (
    AllNetnsOption,
    NetnsOption,
    NoProcessesOption,
    PidsOption,
    PortsOption,
    SourceOption,
    read_snapshots,
    select_by_port_pid,
)
from loopscope.model import Snapshot
from loopscope.render.fields import LISTENER_FIELDS, FieldSpec
from loopscope.render.views import listener_rows

__all__ = ["outside_key", "ports_command", "register", "select_listeners"]


@cli_errors
def ports_command(
    netns: str | None = NetnsOption,
    all_netns: bool = AllNetnsOption,
    port: list[int] = PortsOption,
    pid: list[int] = PidsOption,
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
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Every listener: proto, bind address, scope, port, process(es), user, netns, verdict."""
    snapshots = read_snapshots(netns, all_netns, source, no_processes, listening_only=True)
    rows, tables, gaps = listener_tables(snapshots)
    rows = select_listeners(rows, port=None, pid=None, scope=scope, proto=proto)
    rows = select_by_port_pid(rows, port, pid)
    services = fingerprint_rows(snapshots, rows) if fingerprint else {}
    named = {k: label.split(" ", 1)[0] for k, label in services.items()}  # a clue for verdicts
    findings = exposure_findings(tables, rows, named)
    outside = outside_view(rows) if verify_exposure else {}
    if json_out:
        emit_json(
            "ports",
            ports_document(
                snapshots,
                rows,
                findings,
                gaps,
                services,
                lambda r: {
                    **({"service": services.get(_key(r), "")} if fingerprint else {}),
                    **({"outside": outside.get(outside_key(r), "")} if verify_exposure else {}),
                },
            ),
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
                row["outside"] = outside.get(outside_key(listener), "")
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


def outside_key(row: Listener) -> str:
    """The key of a listener in :func:`outside_view`: ``"addr:port/tcp@netns label"``."""
    return f"{_key(row)}@{row.netns_label}"


def outside_view(rows: list[Listener]) -> dict[str, str]:
    """``"addr:port/tcp@host" -> "reachable"`` / ``"blocked: <rule>"`` / ``"refused"`` from a
    throwaway netns; listeners of other namespaces get ``"not verified: ..."`` with the reason.

    Raises:
        BackendUnavailable: not root, or the namespace could not be made.
    """
    from loopscope.backends.linux.netns import current_netns
    from loopscope.probes.exposure import verify_exposure

    me = current_netns()
    host = [r for r in rows if r.netns == me]
    label = host[0].netns_label if host else "host"
    out: dict[str, str] = {
        outside_key(r): f"not verified: in netns {r.netns_label}; only this host's own "
        "namespace is tried from outside"
        for r in rows
        if r.netns != me
    }
    for result in verify_exposure(host) if host else ():
        key = f"{result.bind}/{result.proto}@{label}"
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

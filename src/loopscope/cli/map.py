"""``loopscope map``: loopback connections right now, client app -> server app:port, self-calls."""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import typer

from loopscope.analysis.talkmap import TalkMap, build_talk_map
from loopscope.cli.common import (
    FailOnOption,
    FormatOption,
    JsonOption,
    WideOption,
    cli_errors,
    console,
    emit_json,
    exit_code_for,
    keep_until_exit,
    print_read_summary,
    slow_read_notice,
)
from loopscope.cli.options import (
    AllNetnsOption,
    NetnsOption,
    NoProcessesOption,
    PidsOption,
    PortsOption,
    SourceOption,
    read_snapshots,
)
from loopscope.model import Finding, Gap, Severity, Snapshot
from loopscope.render.fields import EDGE_FIELDS
from loopscope.render.views import talk_edge_rows

__all__ = [
    "HtmlOption",
    "map_command",
    "register",
    "self_call_findings",
    "talk_map_json",
    "write_html_report",
]

HtmlOption: Any = typer.Option(
    None,
    "--html",
    metavar="FILE",
    help="Also write a self-contained HTML report (call graph, apps, listeners, findings, gaps).",
)


def write_html_report(
    path: str,
    title: str,
    maps: list[tuple[Snapshot, TalkMap]],
    findings: list[Finding],
    gaps: list[Gap],
    **kwargs: Any,
) -> None:
    """Write ``--html FILE`` (see :mod:`loopscope.report.build`) and say so on stderr."""
    from loopscope.cli.common import err_console
    from loopscope.report.build import write_scan_report

    done = write_scan_report(path, title, maps, findings, gaps, **kwargs)
    err_console().print(f"HTML report: {done}", highlight=False, markup=False)


def self_call_findings(snapshot: Snapshot, talk: TalkMap) -> list[Finding]:
    """``SELF_CALL`` (info) for each self-call edge seen in a snapshot; rates need ``watch``."""
    return [
        Finding(
            code="SELF_CALL",
            severity=Severity.INFO,
            subject=f"{e.server} port {e.port}/{e.proto}",
            evidence=f"{e.connections} loopback connection(s) from the app to its own listener right now",
            remedy="if this is on the request path, call the code in-process or through a separate pool; "
            "`loopscope watch` measures the rate and amplification",
            netns=snapshot.netns,
        )
        for e in talk.edges
        if e.self_call
    ]


def talk_map_json(
    snapshot: Snapshot, talk: TalkMap, *, connections: bool = False
) -> dict[str, Any]:
    """JSON shape of one namespace's talk map: edges and counts; every connection only when
    ``connections`` (``--connections``: at 50k connections that list is 14 MB of JSON)."""
    doc: dict[str, Any] = {
        "netns": snapshot.netns_label,
        "edges": [
            {
                "client": e.client,
                "server": e.server,
                "port": e.port,
                "proto": e.proto.value,
                "connections": e.connections,
                "states": e.states,
                "self_call": e.self_call,
                "client_pids": list(e.client_pids),
                "server_pids": list(e.server_pids),
            }
            for e in talk.edges
        ],
        "connection_count": len(talk.connections),
        "self_call_connections": talk.self_call_connections,
        "unpaired": talk.unpaired,
        "ephemeral_in_use": talk.ephemeral_in_use,
    }
    if connections:
        doc["connections"] = [
            {
                "proto": c.proto.value,
                "client": str(c.client),
                "server": str(c.server),
                "state": c.state.value,
                "client_pids": [k.pid for k in (c.client_socket.owners if c.client_socket else ())],
                "server_pids": [k.pid for k in (c.server_socket.owners if c.server_socket else ())],
            }
            for c in talk.connections
        ]
    return doc


@cli_errors
def map_command(
    netns: str | None = NetnsOption,
    all_netns: bool = AllNetnsOption,
    source: str = SourceOption,
    no_processes: bool = NoProcessesOption,
    port: list[int] = PortsOption,
    pid: list[int] = PidsOption,
    dot: bool = typer.Option(
        False, "--dot", help="Print a Graphviz digraph (pipe to `dot -Tsvg`)."
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    connections: bool = typer.Option(
        False,
        "--connections",
        help="With --json: list every connection, not only edges and counts.",
    ),
    fail_on: str = FailOnOption,
    html: str | None = HtmlOption,
) -> None:
    """Loopback connections right now: client process -> server process:port, counts, self-calls."""
    started_ns = time.perf_counter_ns()
    # The read and the analysis allocate a few acyclic objects per socket and free little before exit:
    # cyclic GC passes would only rescan the snapshot's records. Off for the whole command, read
    # included: the collector pauses the GC itself, but turning it back on after the read costs a
    # collection of every record allocated meanwhile (~0.1 s at 100k sockets).
    gc.disable()
    with slow_read_notice():
        snapshots = read_snapshots(netns, all_netns, source, no_processes, ports=port, pids=pid)
    maps = [(s, build_talk_map(s)) for s in snapshots]
    findings = [f for s, t in maps for f in self_call_findings(s, t)]
    gaps: list[Gap] = []
    for s in snapshots:
        gaps += [g for g in s.gaps if g not in gaps]
    if html is not None:
        write_html_report(html, "loopscope map", maps, findings, gaps)
    if dot:
        from loopscope.render.dot import format_dot

        sys.stdout.write(format_dot([e for _, t in maps for e in t.edges]))
    elif json_out:
        emit_json(
            "map",
            {
                "namespaces": [talk_map_json(s, t, connections=connections) for s, t in maps],
                "findings": findings,
                "gaps": gaps,
            },
            large=connections,
        )
    else:
        from loopscope.cli.tables import print_gaps, print_table

        out = console()
        for snap, talk in maps:
            title = (
                f"Loopback talk map ({snap.netns_label}): {len(talk.connections)} connections, "
                f"{talk.self_call_connections} self-call"
            )
            print_table(
                out,
                EDGE_FIELDS,
                talk_edge_rows(talk.edges),
                title=title,
                empty="no loopback connections",
            )
        print_gaps(out, gaps)
        print_read_summary("map", snapshots, started_ns)
    keep_until_exit(maps)
    raise typer.Exit(exit_code_for(findings, fail_on))


def register(app: typer.Typer) -> None:
    """Add ``map`` to the app."""
    app.command("map")(map_command)

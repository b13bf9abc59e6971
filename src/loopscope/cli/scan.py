"""``loopscope scan`` (and plain ``loopscope``): the whole loopback picture of this host on one screen."""

from __future__ import annotations

import gc
import time

import typer

from loopscope.analysis.exposure import check_exposure
from loopscope.analysis.listeners import Listener, find_listeners
from loopscope.analysis.stack import check_stack, summarize_stack
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
from loopscope.cli.listing import listener_json
from loopscope.cli.map import HtmlOption, self_call_findings, talk_map_json, write_html_report
from loopscope.cli.options import (
    AllNetnsOption,
    NetnsOption,
    NoProcessesOption,
    PidsOption,
    PortsOption,
    SourceOption,
    read_snapshots,
)
from loopscope.model import Finding, Gap, Snapshot
from loopscope.render.fields import EDGE_FIELDS, LISTENER_FIELDS
from loopscope.render.views import listener_rows, stack_lines, talk_edge_rows

__all__ = ["register", "scan_command"]

_MAX_EDGES = 15  # scan is one screen; `map` shows every edge
_SCAN_LISTENER_FIELDS = tuple(
    f for f in LISTENER_FIELDS if f.name not in ("reach", "netns", "service", "user")
)


@cli_errors
def scan_command(
    netns: str | None = NetnsOption,
    all_netns: bool = AllNetnsOption,
    source: str = SourceOption,
    no_processes: bool = NoProcessesOption,
    port: list[int] = PortsOption,
    pid: list[int] = PidsOption,
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
    html: str | None = HtmlOption,
) -> None:
    """Stack summary, listeners with exposure, and the loopback talk map."""
    started_ns = time.perf_counter_ns()
    # The read and the analysis allocate a few acyclic objects per socket and free little before exit:
    # cyclic GC passes would only rescan the snapshot's records. Off for the whole command, read
    # included: the collector pauses the GC itself, but turning it back on after the read costs a
    # collection of every record allocated meanwhile (~0.1 s at 100k sockets).
    gc.disable()
    with slow_read_notice():
        snapshots = read_snapshots(netns, all_netns, source, no_processes, ports=port, pids=pid)
    findings: list[Finding] = []
    gaps: list[Gap] = []
    docs = []
    html_maps: list[tuple[Snapshot, TalkMap]] = []
    html_listeners: list[Listener] = []
    out = None if json_out else console()
    if out is not None:
        from rich.text import Text

        from loopscope.cli.tables import (
            FieldTable,
            print_findings,
            print_gaps,
            print_table,
            status_text,
        )
        from loopscope.render.text import printable
    for snap in snapshots:
        summary = summarize_stack(snap)
        listeners = find_listeners(snap)
        talk = build_talk_map(snap)
        local = check_stack(summary, netns_label=snap.netns_label) + check_exposure(snap, listeners)
        local += self_call_findings(snap, talk)
        findings += local
        gaps += [g for g in snap.gaps if g not in gaps]
        html_maps.append((snap, talk))
        html_listeners += listeners
        if out is None:
            docs.append(
                {
                    "netns": snap.netns_label,
                    "netns_id": snap.netns,
                    "source": snap.source,
                    "duration_ns": snap.duration_ns,
                    "stack": summary,
                    "listeners": [listener_json(r) for r in listeners],
                    "talk_map": talk_map_json(snap, talk),
                }
            )
            continue
        header = FieldTable(
            show_header=False, box=None, padding=(0, 2), show_edge=False, pad_edge=False
        )
        header.field_names = ("fact", "value", "status")
        header.add_column(style="bold")
        header.add_column()
        header.add_column()
        for fact, value, status in stack_lines(summary, snap.netns_label):
            header.add_row(Text(printable(fact)), Text(printable(value)), status_text(status))
        out.rule(
            Text.assemble(("loopscope scan", "bold"), f": {printable(snap.netns_label)}"),
            align="left",
        )
        out.print(header)
        print_table(out, _SCAN_LISTENER_FIELDS, listener_rows(listeners, local), title="Listeners")
        print_table(
            out,
            EDGE_FIELDS,
            talk_edge_rows(talk.edges[:_MAX_EDGES]),
            title="Loopback talk map",
            empty="no loopback connections right now",
        )
        if len(talk.edges) > _MAX_EDGES:
            out.print(f"  ... {len(talk.edges) - _MAX_EDGES} more edges: `loopscope map`")
    findings.sort(key=lambda f: (-f.severity.rank, f.code))
    if html is not None:
        write_html_report(
            html, "loopscope scan", html_maps, findings, gaps, listeners=html_listeners
        )
    if out is None:
        emit_json("scan", {"namespaces": docs, "findings": findings, "gaps": gaps})
    else:
        print_findings(out, findings)
        print_gaps(out, gaps)
        print_read_summary("scan", snapshots, started_ns)
    keep_until_exit(html_maps, docs, html_listeners)
    raise typer.Exit(exit_code_for(findings, fail_on))


def register(app: typer.Typer) -> None:
    """Add ``scan`` to the app."""
    app.command("scan")(scan_command)

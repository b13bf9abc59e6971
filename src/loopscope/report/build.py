"""HTML reports of ``scan``, ``map`` and ``watch``: analysis values -> :class:`HtmlDocument` -> a file.

The pure parts are :mod:`loopscope.report.html` (the document) and :mod:`loopscope.report.graph` (the
picture); here the host name, the command line and the clock are read, ``dot`` is run through
:mod:`loopscope.report.graphviz`, and the file is written.
"""

from __future__ import annotations

import shlex
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loopscope.analysis.listeners import Listener
from loopscope.analysis.talkmap import TalkEdge, TalkMap
from loopscope.analysis.watch.report import WatchEdge, WatchReport
from loopscope.model import Finding, Gap, Snapshot
from loopscope.render.fields import EDGE_FIELDS, LISTENER_FIELDS, FieldSpec
from loopscope.render.views import listener_rows, talk_edge_rows
from loopscope.report.graph import build_call_graph
from loopscope.report.graphviz import graph_svg
from loopscope.report.html import HtmlDocument, HtmlTable, format_html
from loopscope.watch.view import (
    APP_FIELDS,
    SOURCE_FIELDS,
    WATCH_EDGE_FIELDS,
    app_rows,
    source_rows,
    watch_edge_rows,
)

__all__ = [
    "ReportMeta",
    "read_meta",
    "scan_document",
    "watch_document",
    "write_html",
    "write_scan_report",
    "write_watch_report",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportMeta:
    """Where and when a report was made."""

    command_line: str
    """``loopscope map --html map.html`` as typed (shell-quoted)."""
    host: str
    """Host name."""
    generated_at: str
    """ISO 8601 UTC time."""


def read_meta(argv: Sequence[str] | None = None) -> ReportMeta:
    """The command line (``sys.argv`` by default), host name and current time."""
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = "loopscope"
    return ReportMeta(
        command_line=shlex.join(args),
        host=socket.gethostname(),
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _table(
    id_: str,
    title: str,
    fields: tuple[FieldSpec, ...],
    rows: Iterable[dict[str, str | int]],
    *,
    hot: str | None = None,
    empty: str = "none",
) -> HtmlTable:
    rows = list(rows)
    return HtmlTable(
        id=id_,
        title=title,
        headers=tuple(f.header for f in fields),
        rows=tuple(tuple(str(r.get(f.name, "")) for f in fields) for r in rows),
        highlight=tuple(bool(r.get(hot)) for r in rows) if hot else (),
        numeric=tuple(f.justify == "right" for f in fields),
        empty=empty,
    )


def _talk_label(e: TalkEdge) -> str:
    return f":{e.port}/{e.proto.value} x{e.connections}"


def _talk_apps(edges: Sequence[TalkEdge]) -> HtmlTable:
    inbound: dict[str, int] = defaultdict(int)
    self_calls: dict[str, int] = defaultdict(int)
    outbound: dict[str, int] = defaultdict(int)
    ports: dict[str, set[int]] = defaultdict(set)
    for e in edges:
        ports[e.server].add(e.port)
        outbound.setdefault(e.client, 0)
        if e.self_call:
            self_calls[e.server] += e.connections
        else:
            inbound[e.server] += e.connections
            outbound[e.client] += e.connections
    names = sorted(set(ports) | set(outbound))
    return HtmlTable(
        id="apps",
        title="Apps (connections open right now)",
        headers=("App", "Ports", "Inbound", "Self-calls", "To others"),
        rows=tuple(
            (
                n,
                ",".join(str(p) for p in sorted(ports.get(n, ()))),
                str(inbound.get(n, 0)),
                str(self_calls.get(n, 0)),
                str(outbound.get(n, 0)),
            )
            for n in names
        ),
        highlight=tuple(self_calls.get(n, 0) > 0 for n in names),
        numeric=(False, False, True, True, True),
        empty="no loopback connections right now",
    )


def scan_document(
    title: str,
    maps: Sequence[tuple[Snapshot, TalkMap]],
    findings: Sequence[Finding],
    gaps: Sequence[Gap],
    meta: ReportMeta,
    *,
    listeners: Sequence[Listener] = (),
    use_dot: bool = True,
) -> HtmlDocument:
    """The document of ``scan``/``map``: the talk map of every namespace read as one picture, apps,
    edges, listeners with their exposure verdict, findings and gaps."""
    edges = [e for _, t in maps for e in t.edges]
    svg, engine = graph_svg(build_call_graph(edges, _talk_label), use_dot=use_dot)
    summary = tuple(
        f"namespace {s.netns_label}: {len(t.connections)} loopback connections, "
        f"{t.self_call_connections} self-call, {len(t.edges)} edges (source {s.source})"
        for s, t in maps
    )
    tables = [
        _talk_apps(edges),
        _table(
            "edges",
            "Loopback talk map (edges)",
            EDGE_FIELDS,
            talk_edge_rows(edges),
            hot="self_call",
            empty="no loopback connections right now",
        ),
    ]
    if listeners:
        tables.append(
            _table(
                "listeners",
                "Listeners and exposure",
                LISTENER_FIELDS,
                listener_rows(listeners, findings),
                empty="no listeners",
            )
        )
    return HtmlDocument(
        title=title,
        command_line=meta.command_line,
        host=meta.host,
        generated_at=meta.generated_at,
        summary=summary,
        graph_svg=svg,
        graph_engine=engine,
        tables=tuple(tables),
        findings=tuple(sorted(findings, key=lambda f: (-f.severity.rank, f.code))),
        gaps=tuple(gaps),
    )


def watch_document(
    report: WatchReport,
    findings: Sequence[Finding],
    meta: ReportMeta,
    *,
    use_dot: bool = True,
) -> HtmlDocument:
    """The document of ``watch``: the call graph with connections/s on each edge, apps with their
    amplification, edges, accept-queue pressure per listener, sources, findings and gaps."""
    window_s = report.window_s

    def label(e: WatchEdge) -> str:
        rate = e.connections / window_s if window_s else 0.0
        return f":{e.port} {rate:.1f}/s ({e.connections})"

    svg, engine = graph_svg(build_call_graph(report.edges, label), use_dot=use_dot)
    app_fields = (
        *APP_FIELDS[:5],
        FieldSpec("self_s", "Self/s", "connections/s", "self-call connections per second", "right"),
        *APP_FIELDS[5:],
    )
    rows = app_rows(report.apps)
    for row, a in zip(rows, report.apps, strict=True):
        row["self_s"] = f"{a.self_per_s:.1f}"
    pressure = HtmlTable(
        id="listeners",
        title="Listeners: accept queue over the window",
        headers=("Listener", "Backlog", "Max queue", "Saturated", "Samples"),
        rows=tuple(
            (
                p.listener,
                "" if p.backlog is None else str(p.backlog),
                str(p.max_accept_queue),
                str(p.saturated_samples),
                str(p.samples),
            )
            for p in report.listeners
        ),
        highlight=tuple(p.saturated_samples > 0 for p in report.listeners),
        numeric=(False, True, True, True, True),
        empty="no listeners",
    )
    return HtmlDocument(
        title="loopscope watch",
        command_line=meta.command_line,
        host=meta.host,
        generated_at=meta.generated_at,
        summary=(
            f"namespace {report.netns_label}, window {window_s:.1f} s, "
            f"{sum(e.connections for e in report.edges)} connections on the call graph below "
            f"({report.connections} to every local listener, client pid known for "
            f"{report.client_pid_known})",
            f"{sum(1 for e in report.edges if e.self_call)} self-call edges, {report.refused} refused, "
            f"max TIME_WAIT {report.max_time_wait}",
        ),
        graph_svg=svg,
        graph_engine=engine,
        tables=(
            HtmlTable(
                id="apps",
                title="Apps and amplification",
                headers=tuple(f.header for f in app_fields),
                rows=tuple(tuple(str(r.get(f.name, "")) for f in app_fields) for r in rows),
                highlight=tuple(a.self_connections > 0 for a in report.apps),
                numeric=tuple(f.justify == "right" for f in app_fields),
                empty="no listeners",
            ),
            _table(
                "edges",
                "Loopback call graph (edges)",
                WATCH_EDGE_FIELDS,
                watch_edge_rows(report.edges, window_s),
                hot="self_call",
                empty="no connections to local listeners",
            ),
            pressure,
            _table("sources", "Sources", SOURCE_FIELDS, source_rows(report)),
        ),
        findings=tuple(sorted(findings, key=lambda f: (-f.severity.rank, f.code))),
        gaps=report.gaps,
    )


def write_html(path: str | Path, doc: HtmlDocument) -> Path:
    """Write the document (UTF-8) and return its path.

    Raises:
        OSError: the file cannot be written.
    """
    out = Path(path)
    out.write_text(format_html(doc), encoding="utf-8")
    return out


def write_scan_report(
    path: str | Path,
    title: str,
    maps: Sequence[tuple[Snapshot, TalkMap]],
    findings: Sequence[Finding],
    gaps: Sequence[Gap],
    *,
    listeners: Sequence[Listener] = (),
) -> Path:
    """``--html FILE`` of ``scan`` and ``map``: :func:`scan_document` written to ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    doc = scan_document(title, maps, findings, gaps, read_meta(), listeners=listeners)
    return write_html(path, doc)


def write_watch_report(path: str | Path, report: WatchReport, findings: Sequence[Finding]) -> Path:
    """``watch --html FILE``: :func:`watch_document` written to ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    return write_html(path, watch_document(report, findings, read_meta()))

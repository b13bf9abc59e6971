"""What each pane of ``loopscope top`` shows, as rows of text (pure: a frame in, rows out).

Kept apart from the Textual widgets so the content is tested without a terminal, and so the UI thread only
copies rows into tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from loopscope.analysis.watch.report import AppStats, WatchEdge, WatchReport
from loopscope.analysis.watch.timeline import Timeline
from loopscope.model import Finding, Gap
from loopscope.model.events import SourceStatus

__all__ = [
    "SORT_KEYS",
    "Filter",
    "SortKey",
    "TopFrame",
    "app_rows",
    "edge_detail",
    "edge_paths",
    "edge_rows",
    "finding_rows",
    "listener_rows",
    "parse_filter",
    "sparkline",
    "status_line",
]

_BLOCKS = "▁▂▃▄▅▆▇█"


class SortKey(str, Enum):
    """Order of the apps and edges panes (key ``s`` cycles)."""

    RATE = "rate"
    """Busiest first (all connections/s)."""
    SELF = "self"
    """Most self-calls first."""
    NAME = "name"
    """By label."""


SORT_KEYS: tuple[SortKey, ...] = (SortKey.RATE, SortKey.SELF, SortKey.NAME)
"""The cycle of ``s``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TopFrame:
    """One refresh of the screen: the report of the recent window and its series."""

    report: WatchReport
    """Report of the last :attr:`window_s` seconds."""
    findings: tuple[Finding, ...]
    """Findings of that report, worst first."""
    timeline: Timeline
    """Its series (sparklines)."""
    paused: bool = False
    """Collection is paused."""
    compute_s: float = 0.0
    """Seconds the analysis of this frame took (off the UI and collector threads)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """What the ``f`` key keeps: apps whose label contains ``text``, or that listen on ``port``."""

    text: str = ""
    """Case-insensitive substring of the app label (empty: any)."""
    port: int | None = None
    """A listening port (None: any)."""

    @property
    def active(self) -> bool:
        """Whether anything is filtered."""
        return bool(self.text) or self.port is not None


def parse_filter(text: str) -> Filter:
    """``"8080"`` or ``":8080"`` -> a port filter; anything else -> a label filter; blank -> none.

    Example: ``parse_filter(":8080") == Filter(port=8080)``; ``parse_filter("gunicorn") ==
    Filter(text="gunicorn")``.
    """
    t = text.strip()
    digits = t.removeprefix(":")
    if digits.isascii() and digits.isdigit() and 0 < int(digits) < 65536:
        return Filter(port=int(digits))
    return Filter(text=t)


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """The last ``width`` values as block characters scaled to their maximum (blank when all zero).

    Example: ``sparkline([0, 1, 2, 4], 4) == " ▃▅█"``.
    """
    tail = list(values)[-width:]
    top = max(tail, default=0.0)
    if top <= 0:
        return " " * len(tail)
    return "".join(
        " " if v <= 0 else _BLOCKS[min(len(_BLOCKS) - 1, int(v / top * (len(_BLOCKS) - 1) + 0.5))]
        for v in tail
    )


def _keep_app(a: AppStats, flt: Filter) -> bool:
    if flt.port is not None and flt.port not in a.ports:
        return False
    return not flt.text or flt.text.lower() in a.name.lower()


def _keep_edge(e: WatchEdge, flt: Filter) -> bool:
    if flt.port is not None and e.port != flt.port:
        return False
    t = flt.text.lower()
    return not t or t in e.client.lower() or t in e.server.lower()


def app_rows(
    frame: TopFrame, sort: SortKey = SortKey.RATE, flt: Filter = Filter()
) -> list[tuple[str, ...]]:
    """``(app, ports, ext/s, self/s, amplification, sparkline of inbound/s, self)`` per app; the
    last cell is ``"self"`` for an app that calls itself (the UI draws the row red)."""
    series = {s.key: s for s in frame.timeline.apps}
    apps = [a for a in frame.report.apps if _keep_app(a, flt)]
    if sort is SortKey.NAME:
        apps.sort(key=lambda a: a.name)
    elif sort is SortKey.SELF:
        apps.sort(key=lambda a: (-a.self_per_s, -a.external_per_s, a.name))
    else:
        apps.sort(key=lambda a: (-(a.self_per_s + a.external_per_s), a.name))
    rows: list[tuple[str, ...]] = []
    for a in apps:
        s = series.get(a.key)
        total = [x + y for x, y in zip(s.external_per_s, s.self_per_s, strict=True)] if s else []
        rows.append(
            (
                a.name,
                ",".join(str(p) for p in a.ports),
                f"{a.external_per_s:.1f}",
                f"{a.self_per_s:.1f}",
                "" if a.self_factor is None else f"{a.self_factor:g}",
                sparkline(total),
                "self" if a.self_connections else "",
            )
        )
    return rows


def edge_rows(
    frame: TopFrame, sort: SortKey = SortKey.RATE, flt: Filter = Filter()
) -> list[tuple[str, ...]]:
    """``(client, server:port, conn/s, conns, self)`` per call-graph edge."""
    window = frame.report.window_s
    edges = _sorted_edges(frame, sort, flt)
    return [
        (
            e.client,
            f"{e.server}:{e.port}",
            f"{e.connections / window:.1f}" if window else "",
            str(e.connections),
            "SELF" if e.self_call else "",
        )
        for e in edges
    ]


def _sorted_edges(frame: TopFrame, sort: SortKey, flt: Filter) -> list[WatchEdge]:
    edges = [e for e in frame.report.edges if _keep_edge(e, flt)]
    if sort is SortKey.NAME:
        edges.sort(key=lambda e: (e.client, e.server, e.port))
    elif sort is SortKey.SELF:
        edges.sort(key=lambda e: (not e.self_call, -e.connections, e.port))
    return edges


def edge_paths(report: WatchReport, edge: WatchEdge) -> tuple[str, dict[str, int]]:
    """HTTP requests of one edge per ``"METHOD path"``, busiest first, and whose they are.

    The report's connection instances are matched to the edge by server port and client pid (one pid
    on one port is one edge). An edge with no client pid (external clients, unknown owners) gets the
    pid-less connections on its port when it is the only such edge there; otherwise the server app's
    paths stand in (its self-calls for a self-call edge, its external paths for the others), and the
    first item says so.

    Returns:
        ``("edge", {"GET /leaf": 12})``, ``("server", {...})`` for the stand-in, or ``("edge", {})``
        when no request line was captured (or without ``--http``).

    Example: a self-call edge of gunicorn on :8080 whose 12 connections each carried ``GET /leaf``
    gives ``("edge", {"GET /leaf": 12})``.
    """
    pids = set(edge.client_pids)
    if not pids and (sum(1 for e in report.edges if e.port == edge.port and not e.client_pids) > 1):
        app = next((a for a in report.apps if a.key == edge.server_app), None)
        if app is None:
            return "server", {}
        if edge.self_call:
            return "server", dict(app.self_paths)
        return "server", {f"? {p}": n for p, n in app.external_paths.items()}
    counts: dict[str, int] = {}
    for inst in report.instances:
        if not inst.established or inst.server.port != edge.port:
            continue
        if (inst.client_pid in pids) if pids else inst.client_pid is None:
            for r in inst.requests:
                key = f"{r.method or '?'} {r.path or '?'}"
                counts[key] = counts.get(key, 0) + 1
    return "edge", dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _pid_list(pids: Sequence[int], limit: int) -> str:
    """``"11"``, ``"1000, 1001 (+48 more)"`` or ``"unknown"``."""
    if not pids:
        return "unknown"
    shown = ", ".join(str(p) for p in pids[:limit])
    return shown + (f" (+{len(pids) - limit} more)" if len(pids) > limit else "")


def edge_detail(
    frame: TopFrame,
    index: int,
    sort: SortKey = SortKey.RATE,
    flt: Filter = Filter(),
    *,
    max_paths: int = 8,
    max_pids: int = 10,
) -> str:
    """The detail of the ``index``-th row of :func:`edge_rows`: pids, bytes, requests, refused and,
    with ``--http``, the edge's HTTP paths with counts (:func:`edge_paths`, ``max_paths`` busiest).
    A grouped client (``curl (300 processes)``) shows its first ``max_pids`` pids and how many more."""
    window = frame.report.window_s
    edges = _sorted_edges(frame, sort, flt)
    if not 0 <= index < len(edges):
        return "no such edge"
    e = edges[index]
    lines = [
        f"{e.client} -> {e.server}:{e.port}" + ("  (SELF-CALL)" if e.self_call else ""),
        f"connections: {e.connections} in {window:.1f} s ({e.connections / window if window else 0:.1f}/s)",
        f"HTTP requests: {'n/a (run with --http)' if e.requests is None else e.requests}",
        f"bytes client->server: {e.bytes_to_server}, server->client: {e.bytes_to_client}",
        f"client pids: {_pid_list(e.client_pids, max_pids)}",
        f"refused connects: {e.refused}",
    ]
    if e.requests is not None:
        whose, paths = edge_paths(frame.report, e)
        if whose == "server":
            kind = "self-call" if e.self_call else "inbound (all clients)"
            lines.append(f"HTTP paths ({kind} of {e.server}; this edge's own are not told apart):")
        else:
            lines.append("HTTP paths:" if paths else "HTTP paths: none captured")
        width = max((len(str(n)) for n in paths.values()), default=1)
        for path, n in list(paths.items())[:max_paths]:
            lines.append(f"  {n:>{width}}  {path}")
        if len(paths) > max_paths:
            lines.append(f"  (+{len(paths) - max_paths} more paths)")
    return "\n".join(lines)


def listener_rows(frame: TopFrame, flt: Filter = Filter()) -> list[tuple[str, ...]]:
    """``(listener, queue/backlog now, max, sparkline of the queue)`` per listener."""
    series = {q.listener: q for q in frame.timeline.listeners}
    out: list[tuple[str, ...]] = []
    for lp in frame.report.listeners:
        if flt.port is not None and lp.port != flt.port:
            continue
        if flt.text and flt.text.lower() not in lp.listener.lower():
            continue
        q = series.get(lp.listener)
        now = q.queue[-1] if q and q.queue else 0
        out.append(
            (
                lp.listener,
                f"{now}/{'?' if lp.backlog is None else lp.backlog}",
                str(lp.max_accept_queue),
                sparkline([float(x) for x in q.queue] if q else []),
                "full" if lp.saturated_samples else "",
            )
        )
    return out


def finding_rows(frame: TopFrame) -> list[tuple[str, ...]]:
    """``(severity, code, subject, remedy)`` per finding."""
    return [(f.severity.value, f.code, f.subject, f.remedy) for f in frame.findings]


def _gap_text(gaps: Sequence[Gap]) -> str:
    return "; ".join(g.what for g in gaps[:3]) + (f" (+{len(gaps) - 3})" if len(gaps) > 3 else "")


def status_line(
    frame: TopFrame | None, sources: Sequence[SourceStatus] = (), flt: Filter = Filter()
) -> str:
    """The sources/gaps line: which sources answer, events lost, gaps, pause and filter state."""
    if frame is None:
        return "starting: opening sources..."
    srcs = sources or frame.report.sources
    on = ",".join(s.name for s in srcs if s.active) or "none"
    off = ",".join(s.name for s in srcs if not s.active)
    lost = sum(s.dropped for s in srcs)
    parts = [f"sources: {on}"]
    if off:
        parts.append(f"off: {off}")
    parts.append(f"lost {lost}")
    if frame.report.gaps:
        parts.append(f"gaps: {_gap_text(frame.report.gaps)}")
    if flt.active:
        parts.append(f"filter: {':' + str(flt.port) if flt.port is not None else flt.text}")
    if frame.paused:
        parts.append("PAUSED")
    return " | ".join(parts)

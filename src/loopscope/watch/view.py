"""Rows, columns and the JSON body of a watch report (pure: values in, values out)."""

from __future__ import annotations

import dataclasses
from typing import Any

from loopscope.analysis.watch.report import AppStats, WatchEdge, WatchReport
from loopscope.model import Finding
from loopscope.render.fields import FieldSpec

__all__ = [
    "APP_FIELDS",
    "SELF_PATH_FIELDS",
    "SOURCE_FIELDS",
    "WATCH_EDGE_FIELDS",
    "app_rows",
    "filter_report",
    "self_path_rows",
    "source_rows",
    "watch_edge_rows",
    "watch_json",
]

APP_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("app", "App", "", "processes owning the listener(s): comm[pid,...]"),
    FieldSpec("ports", "Ports", "", "listening ports"),
    FieldSpec(
        "ext",
        "Ext/s",
        "connections/s",
        "inbound connections per second from clients that are not the app",
        "right",
    ),
    FieldSpec(
        "ext_req",
        "ExtReq",
        "requests",
        "inbound HTTP requests from clients that are not the app (--http)",
        "right",
    ),
    FieldSpec(
        "self", "Self", "connections", "connections from the app to its own listeners", "right"
    ),
    FieldSpec(
        "self_req", "SelfReq", "requests", "HTTP requests from the app to itself (--http)", "right"
    ),
    FieldSpec(
        "out", "ToOthers", "connections", "loopback connections to other local apps", "right"
    ),
    FieldSpec(
        "factor", "Amplif.", "", "self-call requests (or connections) per external request", "right"
    ),
)
WATCH_EDGE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "client",
        "Client",
        "",
        "client app; a client without a listener by name: comm[pid] or 'comm (N processes)'; "
        "'external' or '?'",
    ),
    FieldSpec("server", "Server", "", "server app"),
    FieldSpec("port", "Port", "", "server port", "right"),
    FieldSpec("conns", "Conns", "connections", "connections in the window", "right"),
    FieldSpec("rate", "Conn/s", "connections/s", "connections per second", "right"),
    FieldSpec("reqs", "Reqs", "requests", "HTTP requests (--http)", "right"),
    FieldSpec(
        "bytes",
        "Bytes up/down",
        "bytes",
        "payload bytes client->server / server->client (tcp_info)",
        "right",
    ),
    FieldSpec("self_call", "Self", "", "'self' when the client is the server app"),
)
SELF_PATH_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "call", "Self-call", "", "app -> app: METHOD path (routing query kept, e.g. /?rest_route=)"
    ),
    FieldSpec("requests", "Reqs", "requests", "self-call requests on that path (--http)", "right"),
)
SOURCE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("name", "Source", "", "event source"),
    FieldSpec("active", "On", "", "yes when it answered"),
    FieldSpec("events", "Events", "", "events delivered", "right"),
    FieldSpec("dropped", "Lost", "", "events lost by the kernel", "right"),
    FieldSpec("reason", "Detail", "", "what it covers, or why it is off"),
)


def _human(n: int) -> str:
    for unit in ("", "K", "M", "G"):
        if abs(n) < 1024:
            return f"{n}{unit}"
        n //= 1024
    return f"{n}T"


def app_rows(apps: tuple[AppStats, ...] | list[AppStats]) -> list[dict[str, str | int]]:
    """One row per app."""
    return [
        {
            "app": a.name,
            "ports": ",".join(str(p) for p in a.ports),
            "ext": f"{a.external_per_s:.1f}",
            "ext_req": "" if a.external_requests is None else a.external_requests,
            "self": a.self_connections,
            "self_req": "" if a.self_requests is None else a.self_requests,
            "out": a.outbound_connections,
            "factor": "" if a.self_factor is None else f"{a.self_factor:g}",
        }
        for a in apps
    ]


def self_path_rows(
    apps: tuple[AppStats, ...] | list[AppStats], *, limit: int = 10
) -> list[dict[str, str | int]]:
    """What each app requests from itself (``--http``), busiest first, ``limit`` paths per app:
    ``{"call": "apache2[7] -> apache2[7]: POST /wp-cron.php", "requests": 26}``."""
    return [
        {"call": f"{a.name} -> {a.name}: {path}", "requests": n}
        for a in apps
        for path, n in list(a.self_paths.items())[:limit]
    ]


def watch_edge_rows(
    edges: tuple[WatchEdge, ...] | list[WatchEdge], window_s: float
) -> list[dict[str, str | int]]:
    """One row per call-graph edge with the WATCH_EDGE_FIELDS keys."""
    return [
        {
            "client": e.client,
            "server": e.server,
            "port": e.port,
            "conns": e.connections,
            "rate": f"{e.connections / window_s:.1f}" if window_s else "",
            "reqs": "" if e.requests is None else e.requests,
            "bytes": f"{_human(e.bytes_to_server)}/{_human(e.bytes_to_client)}",
            "self_call": "self" if e.self_call else "",
        }
        for e in edges
    ]


def source_rows(report: WatchReport) -> list[dict[str, str | int]]:
    """One row per event source."""
    return [
        {
            "name": s.name,
            "active": "yes" if s.active else "no",
            "events": s.events,
            "dropped": s.dropped,
            "reason": s.reason,
        }
        for s in report.sources
    ]


def filter_report(
    report: WatchReport, pids: tuple[int, ...], ports: tuple[int, ...]
) -> WatchReport:
    """Keep the apps (and edges touching them) that own one of ``pids`` or listen on one of ``ports``."""
    if not pids and not ports:
        return report
    apps = tuple(a for a in report.apps if set(a.pids) & set(pids) or set(a.ports) & set(ports))
    keys = {a.key for a in apps}
    app_ports = {p for a in apps for p in a.ports}
    edges = tuple(
        e
        for e in report.edges
        if e.server_app in keys or e.client_app in keys or set(e.client_pids) & set(pids)
    )
    listeners = tuple(lp for lp in report.listeners if lp.port in ports or lp.port in app_ports)
    return dataclasses.replace(report, apps=apps, edges=edges, listeners=listeners)


_EDGE_KEYS = frozenset(
    {"client_app", "server_app"}
)  # identities; the labels stand for them in JSON


def watch_json(report: WatchReport, findings: list[Finding]) -> dict[str, Any]:
    """The ``--json`` body (the instances are left out: per-connection detail is large)."""
    return {
        "netns": report.netns_label,
        "started_at_ns": report.started_ns,
        "window_s": round(report.window_s, 3),
        "sources": report.sources,
        "connections": report.connections,
        "client_pid_known": report.client_pid_known,
        "refused": report.refused,
        "client_rst": report.client_rst,
        "apps": [
            {
                **{
                    k: getattr(a, k)
                    for k in (
                        "name",
                        "pids",
                        "ports",
                        "external_connections",
                        "external_requests",
                        "self_connections",
                        "self_requests",
                        "outbound_connections",
                        "outbound_requests",
                        "self_factor",
                        "total_factor",
                        "unit",
                        "per_path_factor",
                        "external_paths",
                        "self_paths",
                        "statuses",
                    )
                },
                "external_per_s": round(a.external_per_s, 3),
                "self_per_s": round(a.self_per_s, 3),
            }
            for a in report.apps
        ],
        "edges": [
            {f.name: getattr(e, f.name) for f in dataclasses.fields(e) if f.name not in _EDGE_KEYS}
            for e in report.edges
        ],
        "listeners": report.listeners,
        "max_time_wait": report.max_time_wait,
        "max_ephemeral": report.max_ephemeral,
        "ephemeral_range_size": report.ephemeral_range_size,
        "findings": findings,
        "gaps": report.gaps,
    }

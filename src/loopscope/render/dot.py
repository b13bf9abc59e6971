"""Graphviz DOT for the loopback talk map (pure): ``loopscope map --dot | dot -Tsvg > map.svg``."""

from __future__ import annotations

from collections.abc import Iterable

from loopscope.analysis.apps import AppKey, app_label
from loopscope.analysis.talkmap import TalkEdge
from loopscope.render.text import printable

__all__ = ["format_dot"]


def _quote(text: str) -> str:
    """A DOT string: control characters escaped by printable() (``\\x1b``), then ``\\`` and ``"``."""
    return '"' + printable(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_dot(edges: Iterable[TalkEdge], *, title: str = "loopback talk map") -> str:
    """A DOT digraph: one node per app (keyed by :class:`loopscope.analysis.apps.AppKey`, never by its
    label: two ownerless listeners both labelled ``?`` are two nodes), one edge per (client, server,
    port) with its connection count; self-calls are red loops. An edge whose two ends share a key
    without being a self-call (an unknown client of an unknown server) gets a separate client node, so
    nothing seems to call itself.

    Example: an edge ``nginx[10] -> app[20]:8000`` with 3 connections gives
    ``n0 [label="nginx[10]"];``, ``n1 [label="app[20]"];`` and ``n0 -> n1 [label=":8000/tcp x3"];``.
    """
    lines = [
        "digraph loopscope {",
        f"  label={_quote(title)};",
        "  rankdir=LR;",
        "  node [shape=box, style=rounded, fontname=monospace];",
    ]
    edges = list(edges)
    pids: dict[AppKey, set[int]] = {}
    for e in edges:  # a client grouped by name is labelled over every edge it is on
        pids.setdefault(e.client_app, set()).update(e.client_pids)
    ids: dict[tuple[AppKey, bool], str] = {}
    nodes: list[str] = []
    body: list[str] = []

    def node(key: AppKey, label: str, *, client_only: bool = False) -> str:
        found = ids.get((key, client_only))
        if found is None:
            found = ids[(key, client_only)] = f"n{len(ids)}"
            if key.comm is not None:
                label = app_label(key, pids=pids.get(key, ()))
            nodes.append(f"  {found} [label={_quote(label)}];")
        return found

    for e in edges:
        alone = e.client_app == e.server_app and not e.self_call
        src = node(e.client_app, e.client, client_only=alone)
        dst = node(e.server_app, e.server)
        attrs = f"label={_quote(f':{e.port}/{e.proto} x{e.connections}')}"
        if e.self_call:
            attrs += ", color=red, fontcolor=red, penwidth=2"
        body.append(f"  {src} -> {dst} [{attrs}];")
    lines += nodes + body
    lines.append("}")
    return "\n".join(lines) + "\n"

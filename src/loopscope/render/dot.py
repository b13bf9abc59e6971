"""Graphviz DOT for the loopback talk map (pure): ``loopscope map --dot | dot -Tsvg > map.svg``."""

from __future__ import annotations

from collections.abc import Iterable

from loopscope.analysis.talkmap import TalkEdge

__all__ = ["format_dot"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_dot(edges: Iterable[TalkEdge], *, title: str = "loopback talk map") -> str:
    """A DOT digraph: one node per app label, one edge per (client, server, port) with its connection
    count; self-calls are red loops.

    Example: an edge ``nginx[10] -> app[20]:8000`` with 3 connections gives
    ``"nginx[10]" -> "app[20]" [label=":8000 x3"];``.
    """
    lines = [
        "digraph loopscope {",
        f"  label={_quote(title)};",
        "  rankdir=LR;",
        "  node [shape=box, style=rounded, fontname=monospace];",
    ]
    for e in edges:
        attrs = f"label={_quote(f':{e.port}/{e.proto} x{e.connections}')}"
        if e.self_call:
            attrs += ", color=red, fontcolor=red, penwidth=2"
        lines.append(f"  {_quote(e.client)} -> {_quote(e.server)} [{attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"

"""The call graph of a report as values, as Graphviz DOT, and as SVG drawn without Graphviz (pure).

Nodes are apps (:class:`loopscope.analysis.apps.AppKey`, labelled by
:func:`loopscope.analysis.apps.app_label` upstream), edges are client app -> server app:port with a rate or
count label; a self-call (client app == server app) is a loop drawn in :data:`SELF_CALL_COLOR`.

Fallback layout (:func:`format_circle_svg`, used when ``dot`` is not installed): nodes on a circle in
first-seen order (one node sits in the middle), edges as straight lines clipped at the node boxes
(parallel and opposite edges bend apart as quadratic curves), self-calls as a loop above their node.
It is deterministic, needs no Graphviz, and stays readable up to a few dozen apps.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from loopscope.analysis.apps import AppKey
from loopscope.report.html import clean_text, escape_text

__all__ = [
    "EDGE_COLOR",
    "SELF_CALL_COLOR",
    "CallGraph",
    "GraphEdge",
    "GraphNode",
    "build_call_graph",
    "format_circle_svg",
    "format_graph_dot",
]

SELF_CALL_COLOR = "#d62728"
"""Self-call loops and their labels (red)."""
EDGE_COLOR = "#4a5568"
"""Every other edge (slate)."""
_CHAR_W = 7.2  # px per character of 12 px monospace
_BOX_H = 26.0


class EdgeLike(Protocol):
    """What the graph needs of an edge: :class:`~loopscope.analysis.talkmap.TalkEdge` and
    :class:`~loopscope.analysis.watch.report.WatchEdge` both fit."""

    @property
    def client_app(self) -> AppKey: ...
    @property
    def server_app(self) -> AppKey: ...
    @property
    def client(self) -> str: ...
    @property
    def server(self) -> str: ...
    @property
    def self_call(self) -> bool: ...


E = TypeVar("E", bound=EdgeLike)


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphNode:
    """One app in the picture."""

    id: str
    """Stable id inside the document, ``n0``, ``n1``... (labels are never ids: they are untrusted)."""
    label: str
    """App label (``comm[pid,...]``, ``external``, ``?``), control characters made visible."""
    self_call: bool
    """The app calls itself (the node carries a loop)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphEdge:
    """Client app -> server app."""

    source: str
    """Client node id."""
    target: str
    """Server node id (== ``source`` for a self-call)."""
    label: str
    """Port and rate or count, e.g. ``:8000 12.5/s``."""
    self_call: bool
    """Client app is the server app."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallGraph:
    """Nodes and edges of one picture."""

    nodes: tuple[GraphNode, ...]
    """Apps, in first-seen order."""
    edges: tuple[GraphEdge, ...]
    """Edges, in the order given."""


def build_call_graph(edges: Iterable[E], label: Callable[[E], str]) -> CallGraph:
    """One node per app key (client or server), one edge per input edge labelled by ``label(edge)``.

    Example: ``nginx[10] -> app[20]`` and ``app[20] -> app[20]`` give nodes ``n0 nginx[10]``,
    ``n1 app[20]`` (``self_call``) and edges ``n0 -> n1``, ``n1 -> n1`` (``self_call``).
    """
    ids: dict[AppKey, str] = {}
    labels: dict[str, str] = {}
    loops: set[str] = set()
    out: list[GraphEdge] = []
    for e in edges:
        for key, text in ((e.client_app, e.client), (e.server_app, e.server)):
            if key not in ids:
                ids[key] = f"n{len(ids)}"
                labels[ids[key]] = clean_text(text)
        src, dst = ids[e.client_app], ids[e.server_app]
        if e.self_call:
            loops.add(dst)
        out.append(
            GraphEdge(source=src, target=dst, label=clean_text(label(e)), self_call=e.self_call)
        )
    nodes = tuple(
        GraphNode(id=node_id, label=labels[node_id], self_call=node_id in loops)
        for node_id in ids.values()
    )
    return CallGraph(nodes=nodes, edges=tuple(out))


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_graph_dot(graph: CallGraph) -> str:
    """DOT for ``dot -Tsvg``: nodes by id with their label as text, SVG classes ``node app`` /
    ``edge`` / ``edge self-call`` so the document can style and test them.

    Example: a self-call edge ``n1 -> n1`` gives
    ``n1 -> n1 [label=":8000 4.0/s", class="edge self-call", color="#d62728", ...];``.
    """
    lines = [
        "digraph loopscope {",
        "  rankdir=LR;",
        '  bgcolor="transparent";',
        '  node [shape=box, style="rounded,filled", fillcolor="#f7fafc", fontname="monospace", fontsize=11];',
        '  edge [fontname="monospace", fontsize=10];',
    ]
    for n in graph.nodes:
        cls = "node app self-caller" if n.self_call else "node app"
        color = f', color="{SELF_CALL_COLOR}"' if n.self_call else ""
        lines.append(
            f"  {n.id} [label={_dot_quote(n.label)}, tooltip={_dot_quote(n.label)}, "
            f"class={_dot_quote(cls)}{color}];"
        )
    for e in graph.edges:
        if e.self_call:
            attrs = (
                f'class="edge self-call", color="{SELF_CALL_COLOR}", fontcolor="{SELF_CALL_COLOR}", '
                "penwidth=2"
            )
        else:
            attrs = f'class="edge", color="{EDGE_COLOR}"'
        lines.append(f"  {e.source} -> {e.target} [label={_dot_quote(e.label)}, {attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _box_w(label: str) -> float:
    return max(60.0, len(label) * _CHAR_W + 20)


def _clip(cx: float, cy: float, w: float, dx: float, dy: float) -> tuple[float, float]:
    """Where a ray from a box centre toward (dx, dy) leaves the box (w wide, _BOX_H high)."""
    if dx == 0 and dy == 0:
        return cx, cy
    tx = (w / 2) / abs(dx) if dx else math.inf
    ty = (_BOX_H / 2) / abs(dy) if dy else math.inf
    t = min(tx, ty)
    return cx + dx * t, cy + dy * t


def _positions(graph: CallGraph) -> tuple[dict[str, tuple[float, float]], float, float]:
    n = len(graph.nodes)
    widest = max((_box_w(x.label) for x in graph.nodes), default=60.0)
    if n <= 1:
        w, h = widest + 160, 160.0
        return ({x.id: (w / 2, h / 2 + 20) for x in graph.nodes}, w, h)
    # the circle is large enough that neighbouring boxes do not touch
    radius = max(110.0, (widest + 40) * n / (2 * math.pi), 40.0 * n / math.pi)
    margin_x, margin_y = widest / 2 + 30, 80.0
    cx, cy = radius + margin_x, radius + margin_y
    pos = {
        x.id: (
            cx + radius * math.cos(2 * math.pi * k / n - math.pi / 2),
            cy + radius * math.sin(2 * math.pi * k / n - math.pi / 2),
        )
        for k, x in enumerate(graph.nodes)
    }
    return pos, 2 * cx, 2 * cy


def format_circle_svg(graph: CallGraph) -> str:
    """The graph as an ``<svg>`` element (no XML prolog, no external references): the fallback layout
    described in the module docstring. Every text is escaped with :func:`escape_text`.

    Example: one app calling itself -> an ``<svg>`` with one ``<g class="node app self-caller">`` holding
    its label and one ``<g class="edge self-call">`` holding a red loop path.
    """
    pos, width, height = _positions(graph)
    widths = {x.id: _box_w(x.label) for x in graph.nodes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="call-graph fallback" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img">',
        "<defs>",
        *(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
            f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/>'
            "</marker>"
            for name, color in (("edge", EDGE_COLOR), ("self", SELF_CALL_COLOR))
        ),
        "</defs>",
    ]
    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    pairs = {(e.source, e.target) for e in graph.edges}
    loop_count: dict[str, int] = defaultdict(int)
    for e in graph.edges:
        x1, y1 = pos[e.source]
        label = escape_text(e.label)
        if e.self_call:
            k = loop_count[e.source]
            loop_count[e.source] += 1
            top = y1 - _BOX_H / 2
            rise = 40 + 18 * k
            d = f"M{x1 - 12:.1f},{top:.1f} C{x1 - 40:.1f},{top - rise:.1f} {x1 + 40:.1f},{top - rise:.1f} {x1 + 12:.1f},{top:.1f}"
            parts.append(
                f'<g class="edge self-call"><title>{label}</title>'
                f'<path d="{d}" fill="none" stroke="{SELF_CALL_COLOR}" stroke-width="2" '
                'marker-end="url(#arrow-self)"/>'
                f'<text x="{x1:.1f}" y="{top - rise * 0.75 - 4:.1f}" text-anchor="middle" '
                f'fill="{SELF_CALL_COLOR}">{label}</text></g>'
            )
            continue
        x2, y2 = pos[e.target]
        k = pair_count[(e.source, e.target)]
        pair_count[(e.source, e.target)] += 1
        bend = 28.0 * k + (22.0 if (e.target, e.source) in pairs else 0.0)
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / length, dx / length  # left normal
        mx, my = (x1 + x2) / 2 + nx * bend, (y1 + y2) / 2 + ny * bend
        sx, sy = _clip(x1, y1, widths[e.source], mx - x1, my - y1)
        tx, ty = _clip(x2, y2, widths[e.target], mx - x2, my - y2)
        lx, ly = (sx + 2 * mx + tx) / 4, (sy + 2 * my + ty) / 4
        parts.append(
            f'<g class="edge"><title>{label}</title>'
            f'<path d="M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {tx:.1f},{ty:.1f}" fill="none" '
            f'stroke="{EDGE_COLOR}" stroke-width="1.4" marker-end="url(#arrow-edge)"/>'
            f'<text x="{lx:.1f}" y="{ly - 4:.1f}" text-anchor="middle" fill="{EDGE_COLOR}">{label}</text></g>'
        )
    for node in graph.nodes:
        x, y = pos[node.id]
        w = widths[node.id]
        cls = "node app self-caller" if node.self_call else "node app"
        stroke = SELF_CALL_COLOR if node.self_call else EDGE_COLOR
        text = escape_text(node.label)
        parts.append(
            f'<g class="{cls}" id="{node.id}"><title>{text}</title>'
            f'<rect x="{x - w / 2:.1f}" y="{y - _BOX_H / 2:.1f}" width="{w:.1f}" height="{_BOX_H:.0f}" '
            f'rx="6" fill="#f7fafc" stroke="{stroke}"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{text}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)

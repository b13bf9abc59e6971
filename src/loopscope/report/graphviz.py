"""Run Graphviz ``dot -Tsvg`` on a call graph; fall back to the pure circular layout without it.

The only subprocess of the report: ``dot`` reads DOT on stdin and writes SVG on stdout, nothing else
(no file, no network). Its XML prolog, DOCTYPE (which names an external DTD) and comments are cut so
the ``<svg>`` element can sit inline in the HTML document.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from loopscope.report.graph import CallGraph, format_circle_svg, format_graph_dot

__all__ = ["FALLBACK_ENGINE", "graph_svg", "run_dot"]

FALLBACK_ENGINE = "circular fallback (Graphviz dot not installed)"
"""What the document says drew the picture when ``dot`` is absent or failed."""
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def run_dot(dot_text: str, *, timeout_s: float = 20.0) -> tuple[str, str] | None:
    """``(svg element, engine text)`` from ``dot -Tsvg``; None when ``dot`` is not on PATH, fails or
    times out (the caller falls back; a broken Graphviz must not cost the report).

    Example: ``run_dot("digraph { a -> b }")`` -> ``('<svg width="62pt" ...>...</svg>',
    'graphviz dot 2.43.0')``.
    """
    exe = shutil.which("dot")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "-Tsvg"],
            input=dot_text.encode(),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        version = subprocess.run(
            [exe, "-V"], capture_output=True, timeout=timeout_s, check=False
        ).stderr.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.decode("utf-8", errors="replace")
    start = out.find("<svg")
    if done.returncode != 0 or start < 0:
        return None
    match = re.search(r"version\s+([\w.]+)", version)
    engine = f"graphviz dot {match.group(1)}" if match else "graphviz dot"
    return _COMMENT.sub("", out[start:]).strip(), engine


def graph_svg(graph: CallGraph, *, use_dot: bool = True) -> tuple[str, str]:
    """``(svg element, engine text)``: Graphviz when installed (and ``use_dot``), else
    :func:`~loopscope.report.graph.format_circle_svg`. An empty graph gives a small note instead."""
    if not graph.nodes:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" class="call-graph empty" width="420" height="40">'
            '<text x="10" y="25">no loopback connections to local listeners</text></svg>',
            "none",
        )
    if use_dot:
        done = run_dot(format_graph_dot(graph))
        if done is not None:
            return done
    return format_circle_svg(graph), FALLBACK_ENGINE

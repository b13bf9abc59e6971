"""``dot -Tsvg`` when installed, the circular fallback when not (PATH without dot)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loopscope.analysis.apps import AppKey
from loopscope.report.graph import CallGraph, GraphEdge, GraphNode
from loopscope.report.graphviz import FALLBACK_ENGINE, graph_svg, run_dot

HOSTILE = "<script>alert(1)</script>\\x1b"
GRAPH = CallGraph(
    nodes=(
        GraphNode(id="n0", label=HOSTILE, self_call=True),
        GraphNode(id="n1", label="nginx[5]", self_call=False),
    ),
    edges=(
        GraphEdge(source="n0", target="n0", label=":8000 4.0/s (40)", self_call=True),
        GraphEdge(source="n1", target="n0", label=":8000 1.0/s (10)", self_call=False),
    ),
)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_dot_svg_is_inline_ready_and_escaped() -> None:
    svg, engine = graph_svg(GRAPH)
    assert engine.startswith("graphviz dot")
    assert (
        svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg and "<!--" not in svg
    )
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    root = ET.fromstring(svg)
    classes = [g.get("class") or "" for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert sum("self-call" in c.split() for c in classes) == 1
    assert sum("app" in c.split() for c in classes) == 2
    assert sum("self-caller" in c.split() for c in classes) == 1


def test_fallback_without_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a directory without dot
    assert run_dot("digraph { a -> b }") is None
    svg, engine = graph_svg(GRAPH)
    assert engine == FALLBACK_ENGINE and 'class="call-graph fallback"' in svg
    assert graph_svg(GRAPH, use_dot=False)[1] == FALLBACK_ENGINE


def test_empty_graph_says_so() -> None:
    svg, engine = graph_svg(CallGraph(nodes=(), edges=()))
    assert engine == "none" and "no loopback connections" in svg
    assert AppKey() == AppKey()  # keys, not labels, identify nodes upstream

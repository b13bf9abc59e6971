"""The call graph: nodes by app key, DOT text, and the pure circular SVG layout."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from loopscope.analysis.talkmap import TalkEdge, build_talk_map
from loopscope.model import Proto
from loopscope.report.graph import (
    SELF_CALL_COLOR,
    build_call_graph,
    format_circle_svg,
    format_graph_dot,
)
from loopscope.testing.factories import connection, listener, make_snapshot, proc

SVG = "{http://www.w3.org/2000/svg}"


def _edges(hostile: str = "gunicorn") -> tuple[TalkEdge, ...]:
    worker = proc(101, hostile)
    nginx = proc(200, "nginx")
    sockets = [
        listener("tcp", "127.0.0.1", 8000, owners=[worker]),
        listener("tcp", "127.0.0.1", 80, owners=[nginx]),
    ]
    sockets += connection(
        ("127.0.0.1", 40001), ("127.0.0.1", 8000), client_owner=worker, server_owner=worker
    )
    sockets += connection(
        ("127.0.0.1", 40002), ("127.0.0.1", 8000), client_owner=nginx, server_owner=worker
    )
    return build_talk_map(make_snapshot(sockets, [worker, nginx])).edges


def _label(e: TalkEdge) -> str:
    return f":{e.port}/{e.proto.value} x{e.connections}"


def test_nodes_are_app_keys_and_self_calls_loop() -> None:
    graph = build_call_graph(_edges(), _label)
    labels = {n.label: n for n in graph.nodes}
    assert set(labels) == {"gunicorn[101]", "nginx[200]"}
    assert labels["gunicorn[101]"].self_call and not labels["nginx[200]"].self_call
    loop = next(e for e in graph.edges if e.self_call)
    assert loop.source == loop.target == labels["gunicorn[101]"].id
    assert loop.label == ":8000/tcp x1"


def test_dot_quotes_labels_and_colors_self_calls() -> None:
    graph = build_call_graph(_edges('a"b\\c\x1b'), _label)
    dot = format_graph_dot(graph)
    assert 'label="a\\"b\\\\c\\\\x1b[101]"' in dot
    assert re.search(
        rf'n0 -> n0 \[label=":8000/tcp x1", class="edge self-call", color="{SELF_CALL_COLOR}"', dot
    )


def test_circle_svg_is_valid_xml_with_escaped_text() -> None:
    hostile = "<script>alert(1)</script>"
    svg = format_circle_svg(build_call_graph(_edges(hostile), _label))
    root = ET.fromstring(svg)  # well-formed: every text escaped
    groups = root.iter(f"{SVG}g")
    classes = [g.get("class") for g in groups]
    assert classes.count("node app self-caller") == 1 and classes.count("node app") == 1
    assert classes.count("edge self-call") == 1 and classes.count("edge") == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert f"{hostile}[101]" in texts
    assert "<script" not in svg
    loop = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "edge self-call")
    assert loop.find(f"{SVG}path").get("stroke") == SELF_CALL_COLOR  # type: ignore[union-attr]


def test_circle_layout_many_nodes_fits_in_the_view() -> None:
    class E:
        def __init__(self, k: int) -> None:
            from loopscope.analysis.apps import AppKey

            self.client_app = AppKey(pid=k)
            self.server_app = AppKey(pid=k + 1)
            self.client, self.server, self.self_call, self.port = f"c{k}", f"c{k + 1}", False, 80
            self.proto = Proto.TCP

    svg = format_circle_svg(build_call_graph([E(k) for k in range(12)], lambda e: "x"))
    root = ET.fromstring(svg)
    w, h = float(root.get("width") or 0), float(root.get("height") or 0)
    for rect in root.iter(f"{SVG}rect"):
        x, y = float(rect.get("x") or 0), float(rect.get("y") or 0)
        assert 0 <= x and x + float(rect.get("width") or 0) <= w and 0 <= y <= h
    assert len(list(root.iter(f"{SVG}rect"))) == 13

"""The HTML document: escaping of host text, sections, no external references."""

from __future__ import annotations

import re

from loopscope.model import Finding, Gap, Severity
from loopscope.report.html import HtmlDocument, HtmlTable, clean_text, escape_text, format_html

HOSTILE = "<script>alert(1)</script>\x1b[31m\x00\x07"


def _doc(**kw: object) -> HtmlDocument:
    base: dict[str, object] = {
        "title": "loopscope map",
        "command_line": "loopscope map --html x.html",
        "host": "box",
        "generated_at": "2026-01-01T00:00:00Z",
        "summary": ("namespace host: 3 loopback connections",),
        "graph_svg": '<svg xmlns="http://www.w3.org/2000/svg"><g class="node app"></g></svg>',
        "graph_engine": "circular fallback",
        "tables": (
            HtmlTable(
                id="apps",
                title="Apps",
                headers=("App", "Self-calls"),
                rows=((HOSTILE, "3"), ("nginx[5]", "0")),
                highlight=(True, False),
                numeric=(False, True),
            ),
        ),
        "findings": (
            Finding(
                code="SELF_CALL",
                severity=Severity.LOW,
                subject=HOSTILE,
                evidence="3 connections",
                remedy="call in-process",
            ),
        ),
        "gaps": (Gap(what="owner of 2 sockets", reason="run as root", count=2),),
    }
    base.update(kw)
    return HtmlDocument(**base)  # type: ignore[arg-type]


def test_clean_and_escape() -> None:
    assert clean_text("a\x1b[31mb\tc\n") == "a\\x1b[31mb\tc\n"
    assert clean_text("\x7f\x85") == "\\x7f\\x85"
    assert escape_text('<script>"x"') == "&lt;script&gt;&quot;x&quot;"
    assert escape_text(3) == "3"


def test_hostile_text_renders_as_text() -> None:
    page = format_html(_doc(host=HOSTILE, command_line=HOSTILE))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m\\x00\\x07" in page
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", page)


def test_sections_and_rows() -> None:
    page = format_html(_doc())
    assert page.startswith("<!DOCTYPE html>")
    assert '<table id="apps">' in page and '<table id="findings">' in page
    assert '<ul id="gaps">' in page and "(2)" in page
    assert '<tr class="hot"><td>&lt;script&gt;' in page  # the self-call row is highlighted
    assert '<td class="num">3</td>' in page
    assert '<section class="graph" id="graph">' in page and 'class="node app"' in page
    assert "default-src 'none'" in page  # a browser refuses any fetch
    # no external reference besides the SVG namespace name (which is never fetched)
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>]*", page))
    assert urls <= {"http://www.w3.org/2000/svg"}


def test_empty_document() -> None:
    page = format_html(
        _doc(
            tables=(HtmlTable(id="edges", title="Edges", headers=(), rows=(), empty="nothing"),),
            findings=(),
            gaps=(),
        )
    )
    assert '<p class="empty" id="edges">nothing</p>' in page
    assert '<p class="empty" id="findings">no findings</p>' in page
    assert '<p class="empty" id="gaps">nothing missing</p>' in page

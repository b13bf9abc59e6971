"""One self-contained HTML document from report values (pure: values in, a string out).

The document fetches nothing: the CSS is inline, the call graph is an inline ``<svg>``, there is no
script and no external URL (``Content-Security-Policy: default-src 'none'`` in a meta tag makes a browser
refuse any fetch a future edit might add). Every text that comes from the host (process names, paths,
gap reasons) goes through :func:`escape_text`: control characters become visible ``\\xNN`` and
``html.escape`` does the rest, so a comm of ``<script>alert(1)</script>`` renders as text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from loopscope.model import Finding, Gap

__all__ = ["HtmlDocument", "HtmlTable", "clean_text", "escape_text", "format_html"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Control characters (C0 but tab and newline, DEL, C1) as visible ``\\xNN``.

    Example: ``clean_text("a\\x1b[31mb")`` -> ``"a\\\\x1b[31mb"`` (a literal backslash, x, 1, b).
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def escape_text(text: object) -> str:
    """``str(text)`` cleaned by :func:`clean_text` and escaped for HTML text and attribute values.

    Example: ``escape_text('<script>"x"')`` -> ``"&lt;script&gt;&quot;x&quot;"``.
    """
    return html.escape(clean_text(str(text)), quote=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class HtmlTable:
    """One table of the document."""

    id: str
    """Element id (a fixed word chosen by the code, e.g. ``apps``; never host data)."""
    title: str
    """Heading above the table."""
    headers: tuple[str, ...]
    """Column headers."""
    rows: tuple[tuple[str, ...], ...]
    """Cells, as text (escaped when written)."""
    highlight: tuple[bool, ...] = ()
    """Per row: draw it as a self-call / alert row (empty: none)."""
    empty: str = "none"
    """Text shown when there are no rows."""
    numeric: tuple[bool, ...] = ()
    """Per column: right-align (empty: none)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HtmlDocument:
    """Everything one report file shows."""

    title: str
    """Page title and heading, e.g. ``loopscope watch``."""
    command_line: str
    """The command that produced it."""
    host: str
    """Host name."""
    generated_at: str
    """When, as text (ISO 8601, UTC)."""
    summary: tuple[str, ...]
    """Lines under the heading (namespace, window, counts)."""
    graph_svg: str
    """The call graph as an ``<svg>`` element (from ``dot -Tsvg`` or the fallback layout)."""
    graph_engine: str
    """Which layout drew it (``graphviz dot 2.43`` or ``circular fallback``)."""
    tables: tuple[HtmlTable, ...]
    """Apps, edges, listeners... in display order."""
    findings: tuple[Finding, ...]
    """Findings, worst first."""
    gaps: tuple[Gap, ...]
    """What could not be seen."""


_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 2em; color: #1a202c; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 .2em; } h2 { font-size: 1.15em; margin: 1.6em 0 .5em; }
.meta { color: #4a5568; font-size: .9em; } .meta code { background: #edf2f7; padding: 0 .3em; }
.graph { border: 1px solid #e2e8f0; border-radius: 6px; padding: .5em; overflow: auto; }
.graph svg text { font: 11px monospace; }
table { border-collapse: collapse; margin: .3em 0; font-size: .9em; }
th, td { border-bottom: 1px solid #e2e8f0; padding: .25em .7em; text-align: left; vertical-align: top; }
th { background: #f7fafc; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td { font-family: ui-monospace, monospace; }
tr.hot td { color: #d62728; font-weight: 600; }
.sev-critical, .sev-high { color: #c53030; font-weight: 700; } .sev-medium { color: #b7791f; font-weight: 700; }
.sev-low, .sev-info { color: #2b6cb0; }
.legend span { display: inline-block; margin-right: 1.2em; } .swatch { width: 1.6em; height: 3px;
  display: inline-block; vertical-align: middle; margin-right: .3em; }
.empty { color: #718096; font-style: italic; }
"""


def _table(t: HtmlTable) -> str:
    head = f'<h2 id="{t.id}-title">{escape_text(t.title)}</h2>'
    if not t.rows:
        return head + f'\n<p class="empty" id="{t.id}">{escape_text(t.empty)}</p>'
    ths = "".join(f"<th>{escape_text(h)}</th>" for h in t.headers)
    body = []
    for i, row in enumerate(t.rows):
        hot = i < len(t.highlight) and t.highlight[i]
        cells = "".join(
            f'<td class="num">{escape_text(c)}</td>'
            if j < len(t.numeric) and t.numeric[j]
            else f"<td>{escape_text(c)}</td>"
            for j, c in enumerate(row)
        )
        body.append(f'<tr class="hot">{cells}</tr>' if hot else f"<tr>{cells}</tr>")
    return (
        head
        + f'\n<table id="{t.id}"><thead><tr>{ths}</tr></thead><tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def _findings(findings: tuple[Finding, ...]) -> str:
    rows = tuple((f.severity.value, f.code, f.subject, f.evidence, f.remedy) for f in findings)
    out = [f'<h2 id="findings-title">Findings ({len(findings)})</h2>']
    if not rows:
        out.append('<p class="empty" id="findings">no findings</p>')
        return "\n".join(out)
    out.append(
        '<table id="findings"><thead><tr><th>Severity</th><th>Code</th><th>Subject</th>'
        "<th>Evidence</th><th>Remedy</th></tr></thead><tbody>"
    )
    for sev, code, subject, evidence, remedy in rows:
        out.append(
            f'<tr><td class="sev-{escape_text(sev)}">{escape_text(sev)}</td><td>{escape_text(code)}</td>'
            f"<td>{escape_text(subject)}</td><td>{escape_text(evidence)}</td>"
            f"<td>{escape_text(remedy)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _gaps(gaps: tuple[Gap, ...]) -> str:
    if not gaps:
        return '<h2 id="gaps-title">Gaps</h2>\n<p class="empty" id="gaps">nothing missing</p>'
    items = "\n".join(
        f"<li><b>{escape_text(g.what)}</b>"
        + (f" ({g.count})" if g.count != 1 else "")
        + f": {escape_text(g.reason)}</li>"
        for g in gaps
    )
    return f'<h2 id="gaps-title">Gaps ({len(gaps)})</h2>\n<ul id="gaps">\n{items}\n</ul>'


def format_html(doc: HtmlDocument) -> str:
    """The whole document as one string (UTF-8 when written).

    Example: ``format_html(HtmlDocument(title="loopscope map", ...))`` starts with ``<!DOCTYPE html>``,
    holds ``<section class="graph">`` with the given SVG, one ``<table>`` per :class:`HtmlTable`, then
    ``<table id="findings">`` and ``<ul id="gaps">``.
    """
    summary = "\n".join(f"<li>{escape_text(line)}</li>" for line in doc.summary)
    legend = (
        '<p class="legend"><span><i class="swatch" style="background:#4a5568"></i>app -> app:port</span>'
        '<span><i class="swatch" style="background:#d62728"></i>self-call (the app calls its own '
        f"listener)</span><span>layout: {escape_text(doc.graph_engine)}</span></p>"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape_text(doc.title)} - {escape_text(doc.host)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{escape_text(doc.title)}</h1>",
            f'<p class="meta" id="meta">host <code id="host">{escape_text(doc.host)}</code>, '
            f'{escape_text(doc.generated_at)}, command <code id="command">{escape_text(doc.command_line)}</code></p>',
            f'<ul class="meta" id="summary">{summary}</ul>',
            '<h2 id="graph-title">Loopback call graph</h2>',
            legend,
            f'<section class="graph" id="graph">\n{doc.graph_svg}\n</section>',
            *(_table(t) for t in doc.tables),
            _findings(doc.findings),
            _gaps(doc.gaps),
            "</body></html>",
            "",
        ]
    )

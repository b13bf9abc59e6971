"""Table layout (issue #12) and escaping (issue #15) of cli/tables.py, rendered to a StringIO."""

from __future__ import annotations

import io

import pytest
from rich.table import Table

from loopscope.cli.tables import (
    TableConsole,
    make_table,
    print_findings,
    print_gaps,
    print_table,
    tsv_lines,
)
from loopscope.model import Finding, Gap, Severity
from loopscope.render.fields import LISTENER_FIELDS

ROWS: list[dict[str, str | int]] = [
    {
        "proto": "tcp",
        "address": "127.0.0.1",
        "port": 41001,
        "scope": "loopback",
        "process": "gunicorn-worker-with-a-long-name[1001,1002,1003,1004,1005]",
        "user": "www-data",
        "queue": "0/4096",
        "verdict": "low ONE-FAMILY",
    },
    {
        "proto": "tcp",
        "address": "fe80::1234:5678:9abc:def0",
        "port": 8,
        "scope": "own-address",
        "process": "redis-server[31469]",
        "user": "redis",
        "queue": "0/511",
        "verdict": "high EXPOSED",
    },
]
FIELDS = tuple(f for f in LISTENER_FIELDS if f.name not in ("reach", "netns", "service"))


def _console(width: int | None, **kw) -> tuple[TableConsole, io.StringIO]:
    buf = io.StringIO()
    if width is None:
        return TableConsole(file=buf, natural=True, color_system=None, **kw), buf
    return TableConsole(file=buf, width=width, color_system=None, **kw), buf


def _lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


@pytest.mark.parametrize("width", [None, 40, 60, 80, 100, 200])
def test_no_value_or_header_is_cut_or_wrapped(width):
    out, buf = _console(width)
    print_table(out, FIELDS, ROWS, title="Listeners")
    lines = _lines(buf)
    header = next(line for line in lines if line.startswith("Proto"))
    assert header.split() == [
        "Proto",
        "Address",
        "Port",
        "Scope",
        "Process",
        "User",
        "AcceptQ",
        "Verdict",
    ]
    for row in ROWS:
        line = next(line for line in lines if f" {row['address']} " in line)
        for key in ("proto", "address", "port", "scope", "user", "queue", "verdict"):
            assert f"{row[key]}" in line, (key, line)
    assert len(lines) == 1 + 2 + len(ROWS)  # title, header, rule, one line per row


def test_pipe_is_natural_width_and_labels_are_whole():
    out, buf = _console(None)
    print_table(out, FIELDS, ROWS, title="Listeners")
    text = buf.getvalue()
    assert ROWS[0]["process"] in text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) < 200
    assert not any(line.endswith(" ") for line in text.splitlines())


def test_narrow_terminal_shortens_labels_first():
    out, buf = _console(100)
    print_table(out, FIELDS, ROWS)
    lines = _lines(buf)
    assert max(len(line) for line in lines) <= 100
    assert any("…" in line for line in lines)  # the long process label, shortened
    assert "127.0.0.1" in buf.getvalue() and "fe80::1234:5678:9abc:def0" in buf.getvalue()


def test_too_narrow_prints_whole_rows_at_natural_width():
    out, buf = _console(40)
    print_table(out, FIELDS, ROWS)
    assert ROWS[0]["process"] in buf.getvalue()  # nothing shortened: the terminal wraps lines


def test_wide_never_shortens():
    out, buf = _console(80, wide=True)
    print_table(out, FIELDS, ROWS)
    assert ROWS[0]["process"] in buf.getvalue() and "…" not in buf.getvalue()


def test_columns_are_not_dropped_when_empty_in_tsv():
    table = make_table(FIELDS, [{**ROWS[0], "user": ""}], omit_empty=False)
    assert tsv_lines(table)[0].split("\t") == [f.name for f in FIELDS]


def test_tsv_escapes_tabs_newlines_and_controls():
    rows: list[dict[str, str | int]] = [{**ROWS[0], "process": "a\tb\nc\x1b[2J"}]
    lines = tsv_lines(make_table(FIELDS, rows, omit_empty=False))
    assert len(lines) == 2
    assert lines[1].split("\t")[4] == "a\\tb\\nc\\x1b[2J"


def test_tsv_console_writes_tables_to_its_tsv_file_and_text_elsewhere():
    tsv, text = io.StringIO(), io.StringIO()
    out = TableConsole(file=text, tsv=True, color_system=None)
    out.tsv_file = tsv
    print_table(out, FIELDS, ROWS, title="Listeners")
    print_findings(out, [_finding("x")])
    print_gaps(out, [Gap(what="owner of 3 sockets", reason="not root")])
    blocks = tsv.getvalue().split("\n\n")
    assert [b.splitlines()[0].split("\t")[0] for b in blocks] == ["proto", "severity", "what"]
    assert len(blocks[0].splitlines()) == 1 + len(ROWS)
    assert text.getvalue() == ""


def test_tsv_of_a_plain_rich_table_uses_snake_case_headers():
    t = Table(title="[bold]Round trip[/bold]")
    t.add_column("Path")
    t.add_column("p50 us")
    t.add_row("tcp4", "[red]12.5[/red]")
    assert tsv_lines(t) == ["path\tp50_us", "tcp4\t12.5"]


def _finding(subject: str) -> Finding:
    return Finding(
        code="EXPOSED_SENSITIVE_SERVICE",
        severity=Severity.HIGH,
        subject=subject,
        evidence=f"evidence {subject}",
        remedy=f"remedy {subject}",
    )


@pytest.mark.parametrize("width", [None, 80])
def test_hostile_text_is_escaped_and_never_markup(width):
    hostile = "\x1b[2J\x1b[31mX[/x][bold]"
    out, buf = _console(width)
    print_table(out, FIELDS, [{**ROWS[0], "process": hostile}], title=f"t {hostile}")
    print_table(out, FIELDS, [], title=hostile, empty=hostile)
    print_findings(out, [_finding(hostile)])
    print_gaps(out, [Gap(what=hostile, reason=hostile)])
    out.print(hostile, markup=False)  # the console's own last line of defence
    out.rule(hostile.replace("[", "("))
    text = buf.getvalue()
    assert "\x1b" not in text
    assert "\\x1b[2J\\x1b[31mX[/x][bold]" in text


def test_colour_output_keeps_rich_styles_but_escapes_text():
    buf = io.StringIO()
    out = TableConsole(file=buf, width=100, color_system="standard", force_terminal=True)
    print_table(out, FIELDS, [{**ROWS[1], "process": "\x1b]0;title\x07"}])
    text = buf.getvalue()
    assert "\\x1b]0;title\\x07" in text
    assert "\x1b]0;" not in text and "\x07" not in text
    assert "\x1b[" in text  # rich's own colours

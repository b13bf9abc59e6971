"""Rich rendering of rows described by FieldSpecs (the only place tables are drawn).

Layout rules (issue #12): no column is dropped and no address, port, count or verdict is wrapped or
cut. Every column is sized to its longest value and never wraps. In a terminal that is too narrow,
the shrinkable columns (process/client/server/app labels, evidence, reason, path text) are shortened
with an ellipsis first; if the table still does not fit, it is printed whole at its natural width
(the terminal wraps whole lines). In a pipe without ``COLUMNS``, every table is printed at its natural
width, one line per row (as ``ss`` and ``lsof`` do). ``--wide`` never shortens; ``--format tsv``
prints tab-separated rows with the field names as header.

Every text cell, title and finding passes through :func:`loopscope.render.text.printable`, and
untrusted text is never parsed as rich markup (issue #15).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.rule import Rule
from rich.segment import Segment, Segments
from rich.table import Table
from rich.text import Text

from loopscope.model import Finding, Gap
from loopscope.render.fields import FINDING_FIELDS, GAP_FIELDS, FieldSpec
from loopscope.render.text import printable

__all__ = [
    "SEVERITY_STYLE",
    "SHRINKABLE_FIELDS",
    "FieldTable",
    "FittedTable",
    "TableConsole",
    "make_table",
    "print_findings",
    "print_gaps",
    "print_table",
    "status_text",
    "tsv_lines",
]

SEVERITY_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
SHRINKABLE_FIELDS = frozenset(
    {"process", "client", "server", "app", "evidence", "reason", "remedy", "path", "endpoint"}
)
"""Columns that may be shortened with an ellipsis in a narrow terminal: labels and prose, never an
address, port, count or verdict."""
_SHRINK_FLOOR = 10
"""A shrinkable column keeps at least this many cells (or its header, or its whole value if shorter)."""
_HUGE = 1_000_000
"""Width used to measure a table without any limit, in cells."""
_PIPE_WIDTH = 10_000
"""Console width in a pipe without COLUMNS: free text is not wrapped (soft wrap), tables are sized
to their natural width, rules are drawn at :data:`_RULE_WIDTH`."""
_RULE_WIDTH = 100
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


class FieldTable(Table):
    """A rich Table that remembers the field name of each column (the TSV header)."""

    field_names: tuple[str, ...] = ()


def _plain(renderable: Any) -> str:
    """The text of a cell or header, without styles (trusted markup in a ``str`` is interpreted)."""
    if isinstance(renderable, Text):
        return renderable.plain
    if isinstance(renderable, str):
        return Text.from_markup(renderable).plain
    return str(renderable)


def _snake(header: str) -> str:
    """``"p50 us"`` -> ``"p50_us"``: a TSV column name for a table not built from FieldSpecs."""
    out = "".join(ch.lower() if ch.isalnum() else "_" for ch in header)
    return "_".join(part for part in out.split("_") if part) or "column"


def tsv_lines(table: Table) -> list[str]:
    """The header line and one line per row of ``table``, tab-separated.

    Header: the field names of a :class:`FieldTable`, else the headers in snake_case. Values pass
    through :func:`printable`, so a tab or newline inside a value is written ``\\t`` / ``\\n``;
    nothing is shortened.
    """
    names = list(getattr(table, "field_names", ()))
    if len(names) != len(table.columns):
        names = [_snake(_plain(c.header)) for c in table.columns]
    columns = [[printable(_plain(cell)) for cell in col.cells] for col in table.columns]
    rows = ["\t".join(values) for values in zip(*columns, strict=True)] if columns else []
    return ["\t".join(names), *rows]


def _measure(console: Console, renderable: Any) -> int:
    if renderable is None or renderable == "":
        return 0
    options = console.options.update(width=_HUGE)
    return Measurement.get(console, options, renderable).maximum


def _fit_table(console: Console, table: Table, width: int | None, *, wide: bool) -> int:
    """Fix every column's width and return the width to render ``table`` at.

    ``width`` None: natural width (a pipe). Otherwise shrink the ellipsis columns (unless ``wide``)
    until the table fits ``width``; when it cannot, render at the natural width.
    """
    natural: list[int] = []
    for col in table.columns:
        cells = [_measure(console, c) for c in col.cells]
        natural.append(max([_measure(console, col.header), *cells]))
    for col, w in zip(table.columns, natural, strict=True):
        col.width, col.min_width, col.max_width, col.no_wrap = w, None, None, True
        if col.overflow != "ellipsis":
            col.overflow = "fold"
    total = Measurement.get(console, console.options.update(width=_HUGE), table).maximum
    if width is None or wide or total <= width:
        return total if width is None or total > width else width
    overhead = total - sum(natural)
    shrink = [i for i, c in enumerate(table.columns) if c.overflow == "ellipsis"]
    fixed = sum(w for i, w in enumerate(natural) if i not in shrink)
    available = width - overhead - fixed
    floors = {
        i: min(natural[i], max(_SHRINK_FLOOR, _measure(console, table.columns[i].header)))
        for i in shrink
    }
    if not shrink or sum(floors.values()) > available:
        return total
    low, high = 0, max(natural[i] for i in shrink)
    while low < high:  # the largest cap at which the shrinkable columns fit
        cap = (low + high + 1) // 2
        if sum(min(natural[i], max(floors[i], cap)) for i in shrink) <= available:
            low = cap
        else:
            high = cap - 1
    for i in shrink:
        table.columns[i].width = min(natural[i], max(floors[i], low))
    return width


class TableConsole(Console):
    """The CLI console: draws tables by the layout rules above and never emits a control character
    that is not its own (a second line of defence behind :func:`printable`).

    Args:
        wide: never shorten a column.
        tsv: tables go to stdout as TSV; every other output (titles, notes, findings text) goes to
            this console's file (give ``file=sys.stderr``).
        natural: tables at their natural width, free text not wrapped (a pipe without COLUMNS).
    """

    def __init__(
        self, *args: Any, wide: bool = False, tsv: bool = False, natural: bool = False, **kw: Any
    ) -> None:
        if natural:
            kw.setdefault("width", _PIPE_WIDTH)
            kw.setdefault("soft_wrap", True)
        super().__init__(*args, **kw)
        self.wide = wide
        self.tsv = tsv
        self.natural = natural
        self.tsv_file: IO[str] = sys.stdout
        self._tsv_tables = 0

    def on_broken_pipe(self) -> None:
        """A reader that goes away (``| head``) raises BrokenPipeError up to ``cli.app.main``, which
        exits quietly (rich's own handling would exit 1, the code for "findings present")."""
        raise BrokenPipeError(32, "stdout closed by its reader")

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """``Console.print``, with every Table drawn by :meth:`print_table_renderable`."""
        if not any(isinstance(o, Table) for o in objects):
            super().print(*objects, **kwargs)
            return
        for o in objects:
            if isinstance(o, Table):
                self.print_table_renderable(o)
            else:
                super().print(o, **kwargs)

    def rule(self, title: str | Text = "", *args: Any, **kwargs: Any) -> None:
        """``Console.rule``; in a pipe, drawn at 100 cells (or the title's width) instead of the
        console's 10,000."""
        if not self.natural:
            super().rule(title, *args, **kwargs)
            return
        text = Text.from_markup(title) if isinstance(title, str) else title
        self._print_at(Rule(title, *args, **kwargs), max(_RULE_WIDTH, text.cell_len + 6))

    def print_table_renderable(self, table: Table) -> None:
        """Print ``table``: TSV, natural width, or fitted to the terminal (see the module doc)."""
        if self.tsv:
            if self._tsv_tables:
                self.tsv_file.write("\n")
            self._tsv_tables += 1
            self.tsv_file.write("".join(line + "\n" for line in tsv_lines(table)))
            self.tsv_file.flush()
            return
        title, table.title = table.title, None
        if title:
            # a str title is the caller's own markup (make_table gives untrusted titles as Text)
            super().print(
                Text.from_markup(title) if isinstance(title, str) else title, highlight=False
            )
        if not table.columns:
            return
        width = _fit_table(self, table, None if self.natural else self.width, wide=self.wide)
        self._print_at(table, width)

    def _print_at(self, renderable: RenderableType, width: int) -> None:
        """Print at ``width`` cells, even wider than the console; trailing blanks are dropped."""
        lines = self.render_lines(renderable, self.options.update(width=width), pad=False)
        segments: list[Segment] = []
        for line in lines:
            segments.extend(_rstrip(line))
            segments.append(Segment.line())
        super().print(Segments(segments), crop=False, end="")

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        """Escape any control character in text segments (rich's own control segments pass)."""
        clean = (
            s if s.control or s.text.isprintable() else Segment(_printable_lines(s.text), s.style)
            for s in buffer
        )
        return super()._render_buffer(clean)


class FittedTable:
    """A table laid out like :meth:`TableConsole.print_table_renderable` wherever it is rendered
    (inside a rich Live view): labels shorten first to fit; what still does not fit is cropped by
    the live display, the only place a row can be cut (it is redrawn, never the final output)."""

    def __init__(self, table: Table) -> None:
        self.title, table.title = table.title, None
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table, title = self.table, self.title
        if title:
            yield Text.from_markup(title) if isinstance(title, str) else title
        if table.columns:
            wide = bool(getattr(console, "wide", False))
            width = _fit_table(console, table, options.max_width, wide=wide)
            yield from console.render(table, options.update(width=width))


def _rstrip(line: list[Segment]) -> list[Segment]:
    """``line`` without trailing spaces (unless they carry a background colour)."""
    out = list(line)
    while out and not out[-1].control and not (out[-1].style and out[-1].style.bgcolor):
        text = out[-1].text.rstrip(" ")
        if text:
            out[-1] = Segment(text, out[-1].style)
            break
        out.pop()
    return out


def _printable_lines(text: str) -> str:
    return "\n".join(printable(part) for part in text.split("\n"))


def _cell(spec: FieldSpec, value: str) -> Text:
    style = ""
    if spec.name == "severity":
        style = SEVERITY_STYLE.get(value, "")
    elif spec.name == "verdict" and value != "ok":
        style = "yellow"
    elif spec.name == "self_call" and value:
        style = "bold magenta"
    elif spec.name == "scope" and value in ("wildcard", "own-address"):
        style = "yellow"
    return Text(printable(value), style=style)


def make_table(
    fields: Sequence[FieldSpec],
    rows: Iterable[dict[str, str | int]],
    *,
    title: str | Text | None = None,
    omit_empty: bool = True,
) -> FieldTable:
    """A table with one column per field; columns that are empty in every row are dropped (never in
    TSV: see :func:`print_table`). ``title`` is plain text (escaped, shown bold), or a Text."""
    rows = list(rows)
    shown = [
        f
        for f in fields
        if not omit_empty or any(str(r.get(f.name, "")) not in ("", "-") for r in rows)
    ]
    if isinstance(title, str):
        title = Text(printable(title), style="bold")
    table = FieldTable(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        show_edge=False,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        expand=False,
    )
    table.field_names = tuple(f.name for f in shown)
    for spec in shown:
        overflow = "ellipsis" if spec.name in SHRINKABLE_FIELDS else "fold"
        table.add_column(spec.header, justify=spec.justify, overflow=overflow, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(_cell(spec, str(row.get(spec.name, ""))) for spec in shown))
    return table


def _is_tsv(console: Console) -> bool:
    return bool(getattr(console, "tsv", False))


def print_table(
    console: Console,
    fields: Sequence[FieldSpec],
    rows: Iterable[dict[str, str | int]],
    *,
    title: str | None = None,
    empty: str = "none",
) -> None:
    """Print a table, or ``title: empty`` when there are no rows (TSV: the header line alone)."""
    rows = list(rows)
    if _is_tsv(console):
        console.print(make_table(fields, rows, omit_empty=False))
        return
    if not rows:
        line = Text()
        if title:
            line.append(printable(title), style="bold")
            line.append(": ")
        line.append(printable(empty))
        console.print(line, highlight=False)
        return
    console.print(make_table(fields, rows, title=title))


def print_findings(
    console: Console, findings: Iterable[Finding], *, title: str = "Findings"
) -> None:
    """Findings as blocks: ``severity CODE subject`` then evidence and remedy, indented
    (TSV: a table of the FINDING_FIELDS, none when there is no finding)."""
    items = list(findings)
    if _is_tsv(console):
        if items:
            rows: list[dict[str, str | int]] = [
                {
                    "severity": f.severity.value,
                    "code": f.code,
                    "subject": f.subject,
                    "evidence": f.evidence,
                    "remedy": f.remedy,
                }
                for f in items
            ]
            console.print(make_table(FINDING_FIELDS, rows, omit_empty=False))
        return
    if not items:
        console.print(Text.assemble((printable(title), "bold"), ": none"), highlight=False)
        return
    console.print(Text(printable(title), style="bold"), highlight=False)
    for f in items:
        line = Text("  ")
        line.append(f"{f.severity.value:<8}", style=SEVERITY_STYLE.get(f.severity.value, ""))
        line.append(f" {printable(f.code)}", style="bold")
        line.append(f"  {printable(f.subject)}")
        console.print(line, highlight=False)
        console.print(
            Padding(Text(printable(f.evidence)), (0, 0, 0, 6), expand=False), highlight=False
        )
        console.print(
            Padding(Text("fix: " + printable(f.remedy), style="green"), (0, 0, 0, 6), expand=False),
            highlight=False,
        )


def print_gaps(console: Console, gaps: Iterable[Gap]) -> None:
    """Say what could not be seen, one line each."""
    rows: list[dict[str, str | int]] = [{"what": g.what, "reason": g.reason} for g in gaps]
    if rows:
        console.print(
            make_table(GAP_FIELDS, rows, title="Not seen", omit_empty=not _is_tsv(console))
        )


def status_text(status: str) -> Text:
    """ok/warn/fail/skipped in colour."""
    return Text(printable(status), style=_STATUS_STYLE.get(status, ""))

"""Rich rendering of rows described by FieldSpecs (the only place tables are drawn)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from loopscope.model import Finding, Gap
from loopscope.render.fields import GAP_FIELDS, FieldSpec

__all__ = [
    "SEVERITY_STYLE",
    "make_table",
    "print_findings",
    "print_gaps",
    "print_table",
    "status_text",
]

SEVERITY_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
_NO_WRAP = {
    "process",
    "client",
    "server",
    "states",
    "verdict",
    "code",
    "severity",
    "port",
    "proto",
    "scope",
    "queue",
    "connections",
}
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def make_table(
    fields: Sequence[FieldSpec],
    rows: Iterable[dict[str, str | int]],
    *,
    title: str | None = None,
    omit_empty: bool = True,
) -> Table:
    """A rich Table with one column per field; columns that are empty in every row are dropped."""
    rows = list(rows)
    shown = [
        f
        for f in fields
        if not omit_empty or any(str(r.get(f.name, "")) not in ("", "-") for r in rows)
    ]
    table = Table(
        title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, expand=False
    )
    for spec in shown:
        no_wrap = spec.name in _NO_WRAP
        table.add_column(spec.header, justify=spec.justify, overflow="fold", no_wrap=no_wrap)  # type: ignore[arg-type]
    for row in rows:
        cells = []
        for spec in shown:
            value = str(row.get(spec.name, ""))
            style = ""
            if spec.name == "severity":
                style = SEVERITY_STYLE.get(value, "")
            elif spec.name == "verdict" and value != "ok":
                style = "yellow"
            elif spec.name == "self_call" and value:
                style = "bold magenta"
            elif spec.name == "scope" and value in ("wildcard", "own-address"):
                style = "yellow"
            cells.append(Text(value, style=style))
        table.add_row(*cells)
    return table


def print_table(
    console: Console,
    fields: Sequence[FieldSpec],
    rows: Iterable[dict[str, str | int]],
    *,
    title: str | None = None,
    empty: str = "none",
) -> None:
    """Print a table, or ``title: empty`` when there are no rows."""
    rows = list(rows)
    if not rows:
        console.print(f"[bold]{title}[/bold]: {empty}" if title else empty)
        return
    console.print(make_table(fields, rows, title=f"[bold]{title}[/bold]" if title else None))


def print_findings(
    console: Console, findings: Iterable[Finding], *, title: str = "Findings"
) -> None:
    """Findings as blocks: ``severity CODE subject`` then evidence and remedy, indented."""
    items = list(findings)
    if not items:
        console.print(f"[bold]{title}[/bold]: none")
        return
    console.print(f"[bold]{title}[/bold]")
    for f in items:
        line = Text("  ")
        line.append(f"{f.severity.value:<8}", style=SEVERITY_STYLE.get(f.severity.value, ""))
        line.append(f" {f.code}", style="bold")
        line.append(f"  {f.subject}")
        console.print(line)
        console.print(Padding(Text(f.evidence), (0, 0, 0, 6)), highlight=False)
        console.print(
            Padding(Text("fix: " + f.remedy, style="green"), (0, 0, 0, 6)), highlight=False
        )


def print_gaps(console: Console, gaps: Iterable[Gap]) -> None:
    """Say what could not be seen, one line each."""
    rows: list[dict[str, str | int]] = [{"what": g.what, "reason": g.reason} for g in gaps]
    if rows:
        console.print(make_table(GAP_FIELDS, rows, title="[bold]Not seen[/bold]"))


def status_text(status: str) -> Text:
    """ok/warn/fail/skipped in colour."""
    return Text(status, style=_STATUS_STYLE.get(status, ""))

"""Text and JSON views of a doctor report (``format_*`` return values, ``print_*`` print)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from loopscope.analysis.doctor.verdict import CheckResult, RungResult, Verdict
from loopscope.doctor.runner import DoctorReport, NamespaceReport
from loopscope.render.text import printable

__all__ = ["doctor_report_json", "print_report"]

_STYLE = {
    Verdict.OK: "green",
    Verdict.WARN: "yellow",
    Verdict.FAIL: "bold red",
    Verdict.SKIPPED: "dim",
}


def _namespace_json(ns: NamespaceReport) -> dict[str, Any]:
    facts = ns.facts
    return {
        "netns": facts.netns_label,
        "netns_id": facts.snapshot.netns,
        "verdict": ns.verdict,
        "gather_ms": round(facts.gather_ns / 1e6, 2) if facts.gather_ns is not None else None,
        "resolver": facts.loopback.resolution.resolver,
        "hosts_path": facts.loopback.resolution.hosts_path,
        "rungs": [
            {
                "rung": r.rung,
                "name": r.name,
                "verdict": r.verdict,
                "meaningful": r.meaningful,
                "not_meaningful_because": r.not_meaningful_because or None,
                "invalidates": r.invalidates,
                "checks": [
                    {
                        "id": c.id,
                        "title": c.title,
                        "verdict": c.verdict,
                        "evidence": c.evidence,
                        "remedy": c.remedy or None,
                        "code": c.code or None,
                        "severity": c.finding_severity,
                        "caused_by": c.caused_by,
                        "service_level": c.service_level,
                        "data": c.data,
                    }
                    for c in r.checks
                ],
            }
            for r in ns.rungs
        ],
    }


def doctor_report_json(
    report: DoctorReport, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The body of ``loopscope doctor --json`` (``emit_json`` adds schema_version and command).

    Shape: ``{"options", "verdict", "namespaces": [{"netns", "verdict", "rungs": [{"rung", "verdict",
    "invalidates", "checks": [{"id", "verdict", "evidence", "remedy", "code", "severity", "data"...}]}]}],
    "findings", "gaps"}``.
    """
    return {
        "options": options or {},
        "verdict": max(
            (ns.verdict for ns in report.namespaces), key=_rank, default=Verdict.SKIPPED
        ),
        "namespaces": [_namespace_json(ns) for ns in report.namespaces],
        "findings": report.findings,
        "gaps": report.gaps,
    }


def _rank(v: Verdict) -> int:
    return {Verdict.SKIPPED: 0, Verdict.OK: 1, Verdict.WARN: 2, Verdict.FAIL: 3}[v]


def _rung_table(rung: RungResult) -> Table:
    title = Text.assemble(
        (printable(f"Rung {rung.rung}: {rung.name} "), "bold"),
        (rung.verdict.value.upper(), _STYLE[rung.verdict]),
    )
    if rung.invalidates:
        title.append(
            f"  (so rungs {', '.join(map(str, rung.invalidates))} above are not meaningful)"
        )
    if not rung.meaningful:
        title.append("  (not meaningful: a rung below failed)", style="dim")
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        show_edge=False,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        expand=False,
    )
    # the console draws it (loopscope.cli.tables): check and evidence shorten first, never the verdict
    table.add_column("check", no_wrap=True, overflow="ellipsis")
    table.add_column("verdict", no_wrap=True)
    table.add_column("evidence", no_wrap=True, overflow="ellipsis")
    for c in rung.checks:
        table.add_row(
            Text(printable(c.title)),
            Text(c.verdict.value, style=_STYLE[c.verdict]),
            Text(printable(c.evidence)),
        )
    return table


def _roots(check_id: str, checks: dict[str, CheckResult], depth: int = 0) -> list[str]:
    """Failed checks at the bottom of ``check_id``'s ``caused_by`` chain (empty if it has no cause)."""
    out: list[str] = []
    for cause in checks[check_id].caused_by:
        deeper = _roots(cause, checks, depth + 1) if depth < 8 and cause in checks else []
        for root in deeper or [cause]:
            if root not in out:
                out.append(root)
    return out


def print_report(console: Console, report: DoctorReport) -> None:
    """Every namespace's rungs as tables, then what to do, then gaps."""
    for ns in report.namespaces:
        console.rule(
            Text.assemble(
                ("loopscope doctor", "bold"),
                printable(f": netns {ns.facts.netns_label} "),
                (ns.verdict.value.upper(), _STYLE[ns.verdict]),
            ),
            align="left",
        )
        for rung in ns.rungs:
            console.print(_rung_table(rung))
        checks = {c.id: c for r in ns.rungs for c in r.checks}
        todo = [c for c in checks.values() if c.verdict in (Verdict.FAIL, Verdict.WARN)]
        if todo:
            console.print("[bold]What to do[/bold]")
        else:
            console.print(Text("Nothing to do: no check warned or failed.", style="green"))
        followers: dict[str, list[str]] = {}
        for c in todo:
            roots = _roots(c.id, checks)
            if roots:
                for root in roots:
                    followers.setdefault(root, []).append(c.title)
        for c in todo:
            if _roots(c.id, checks):
                continue
            line = Text(f"  {c.verdict.value:<4} ", style=_STYLE[c.verdict])
            line.append(f"{printable(c.title)}: ", style="bold")
            line.append(printable(c.remedy or "-"))
            if c.id in followers:
                line.append(
                    printable(f"  (this also explains: {', '.join(followers[c.id])})"), style="dim"
                )
            console.print(line, highlight=False)
        console.print()
    for gap in report.gaps:
        console.print(Text(printable(f"gap: {gap.what}: {gap.reason}"), style="dim"))

"""``loopscope probe [HOST][:PORT][/PATH]``: a local service tried on every address a client might use."""

from __future__ import annotations

from typing import Any

import typer

from loopscope.analysis.probe.expect import parse_expectations
from loopscope.analysis.probe.target import parse_target
from loopscope.analysis.stats import LogHistogram
from loopscope.cli.common import (
    FailOnOption,
    FormatOption,
    JsonOption,
    WideOption,
    cli_errors,
    console,
    emit_json,
    exit_code_for,
)
from loopscope.cli.tables import print_findings, print_gaps, print_table
from loopscope.errors import UsageError
from loopscope.model.probe import AddressResult, Attempt
from loopscope.probes.run import ProbeReport, run_probe
from loopscope.render.fields import FieldSpec

__all__ = [
    "HEADERS_OF_INTEREST",
    "PROBE_FIELDS",
    "probe_command",
    "probe_report_json",
    "register",
    "result_rows",
]

HEADERS_OF_INTEREST = (
    "server",
    "content-type",
    "content-length",
    "location",
    "cache-control",
    "connection",
    "strict-transport-security",
    "www-authenticate",
    "x-powered-by",
)

PROBE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "address",
        "Address",
        "",
        "address tried and why it is on the list (host iface, localhost order)",
    ),
    FieldSpec("result", "Result", "", "ok, or the error (ECONNREFUSED, ETIMEDOUT, TLS: ...)"),
    FieldSpec("connect", "Connect ms", "ms", "TCP connect time (p50/p99 with --count)", "right"),
    FieldSpec(
        "tls",
        "TLS ms",
        "ms",
        "TLS handshake time (version, cipher, certificate printed below)",
        "right",
    ),
    FieldSpec("status", "Status", "", "HTTP status", "right"),
    FieldSpec(
        "ttfb",
        "TTFB ms",
        "ms",
        "request sent to first response byte (p50/p99 with --count)",
        "right",
    ),
    FieldSpec(
        "total", "Total ms", "ms", "request sent to last body byte (p50/p99 with --count)", "right"
    ),
    FieldSpec("body", "Body B", "bytes", "decoded body size", "right"),
)


def _ms(values_s: list[float]) -> str:
    if not values_s:
        return "-"
    if len(values_s) == 1:
        return f"{values_s[0] * 1e3:.2f}"
    s = LogHistogram.of([max(1, int(v * 1e9)) for v in values_s]).summarize()
    return f"{s.p50_ns / 1e6:.2f}/{s.p99_ns / 1e6:.2f}"


def _stats(values_s: list[float]) -> dict[str, float] | None:
    if not values_s:
        return None
    s = LogHistogram.of([max(1, int(v * 1e9)) for v in values_s]).summarize()
    return {
        "count": s.count,
        "p50_ms": s.p50_ns / 1e6,
        "p99_ms": s.p99_ns / 1e6,
        "max_ms": s.max_ns / 1e6,
    }


def _result_text(r: AddressResult) -> str:
    bad = [a for a in r.attempts if not a.ok]
    if not bad:
        return "ok"
    first = bad[0]
    text = f"{first.error}" + (f" ({first.phase})" if first.phase not in (None, "connect") else "")
    return text if len(bad) == len(r.attempts) else f"{len(bad)}/{len(r.attempts)} {text}"


def _address_text(r: AddressResult) -> str:
    """``127.0.0.1 localhost#1``, ``192.0.2.2 eth0``, ``::1``."""
    extra = r.candidate.label.replace(r.candidate.address, "").strip().strip("()")
    extra = extra.replace("localhost #", "localhost#")
    extra = extra.removeprefix("host ")
    return f"{r.candidate.address} {extra}".strip()


def result_rows(report: ProbeReport) -> list[dict[str, str | int]]:
    """Table rows, one per address."""
    rows: list[dict[str, str | int]] = []
    for r in report.results:
        atts: list[Attempt] = list(r.attempts)
        tls = next((a.tls for a in atts if a.tls), None)
        https = [a.http for a in atts if a.http is not None]
        rows.append(
            {
                "address": _address_text(r),
                "result": _result_text(r),
                "connect": _ms([a.connect_s for a in atts if a.connect_s is not None]),
                "tls": _ms([a.tls.handshake_s for a in atts if a.tls is not None]) if tls else "",
                "status": ",".join(sorted({str(h.status) for h in https})),
                "ttfb": _ms([h.ttfb_s for h in https]),
                "total": _ms([h.total_s for h in https])
                if len(https) > 1 or report.mode != "tcp"
                else "",
                "body": ",".join(sorted({str(h.body_bytes) for h in https})),
            }
        )
    return rows


def _attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "ok": a.ok,
        "error": a.error,
        "phase": a.phase,
        "connect_s": a.connect_s,
        "reused_connection": a.reused_connection,
        "tls": a.tls,
        "http": None
        if a.http is None
        else {
            "status": a.http.status,
            "reason": a.http.reason,
            "headers": [list(h) for h in a.http.headers],
            "body_bytes": a.http.body_bytes,
            "ttfb_s": a.http.ttfb_s,
            "total_s": a.http.total_s,
        },
        "banner": a.banner.decode("latin-1") if a.banner else None,
    }


def probe_report_json(report: ProbeReport) -> dict[str, Any]:
    """The JSON body of a probe report."""
    return {
        "target": report.target,
        "mode": report.mode,
        "elapsed_s": report.elapsed_s,
        "addresses": [
            {
                "label": r.candidate.label,
                "address": r.candidate.address,
                "family": r.candidate.family,
                "ok": r.ok,
                "connect": _stats([a.connect_s for a in r.attempts if a.connect_s is not None]),
                "ttfb": _stats([a.http.ttfb_s for a in r.attempts if a.http is not None]),
                "total": _stats([a.http.total_s for a in r.attempts if a.http is not None]),
                "attempts": [_attempt_json(a) for a in r.attempts],
            }
            for r in report.results
        ],
        "fingerprint": report.fingerprint,
        "checks": report.checks,
        "findings": report.findings,
        "gaps": report.gaps,
    }


def _print_details(report: ProbeReport) -> None:
    """Service, TLS, headers and checks under the table. Everything here came from the server
    (headers, certificate subject, banner): plain Text through printable(), never markup."""
    from rich.text import Text

    from loopscope.render.text import printable

    out = console()

    def line(label: str, text: str) -> None:
        out.print(Text.assemble((label, "bold"), ": ", printable(text)), highlight=False)

    first = next((a for r in report.results for a in r.attempts if a.ok), None)
    if report.fingerprint is not None:
        fp = report.fingerprint
        line("Service", fp.label + (f"  ({fp.detail})" if fp.detail else ""))
    if first is not None and first.tls is not None:
        t = first.tls
        days = (
            f", expires in {t.expires_in_s / 86400:.0f} days" if t.expires_in_s is not None else ""
        )
        own = " (self-signed)" if t.self_signed else ""
        line(
            "TLS",
            f"{t.version} {t.cipher}; subject {t.subject}{own}; not after {t.not_after}{days}",
        )
    if first is not None and first.http is not None:
        hs = [f"{k}: {v}" for k, v in first.http.headers if k in HEADERS_OF_INTEREST]
        if hs:
            line("Headers", "; ".join(hs))
    for c in report.checks:
        mark = Text("pass", style="green") if c.ok else Text("FAIL", style="bold red")
        out.print(
            Text.assemble(mark, " ", printable(f"{c.expectation} on {c.target}: {c.got}")),
            highlight=False,
        )


@cli_errors
def probe_command(
    target: str = typer.Argument(
        "", help="[SCHEME://][HOST][:PORT][/PATH]; no host: every local address."
    ),
    count: int = typer.Option(
        1, "--count", "-n", help="Tries per address (p50/p99 when > 1; HTTP keeps alive)."
    ),
    timeout_s: float = typer.Option(2.0, "--timeout", help="Per-phase timeout, seconds."),
    expect_status: str | None = typer.Option(
        None, "--expect-status", help="200, 2xx, 200,204 or 200-299."
    ),
    expect_header: list[str] = typer.Option(
        [], "--expect-header", help="'Name' or 'Name: value' (repeatable)."
    ),
    expect_body: str | None = typer.Option(
        None, "--expect-body", help="Regex the body must contain."
    ),
    expect_json: list[str] = typer.Option(
        [], "--expect-json", help="PATH=VALUE, e.g. status=ok (repeatable)."
    ),
    no_diagnose: bool = typer.Option(
        False, "--no-diagnose", help="Do not read listeners/firewall on failure."
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Try a local service on 127.0.0.1, ::1, each host address and localhost; explain what fails."""
    if not 1 <= count <= 10000:
        raise UsageError(f"--count {count} out of range 1-10000")
    if not 0 < timeout_s <= 60:
        raise UsageError(f"--timeout {timeout_s} out of range (0, 60]")
    parsed = parse_target(target)
    expectations = parse_expectations(
        status=expect_status, headers=expect_header, body=expect_body, json_paths=expect_json
    )
    if expectations and parsed.scheme == "tcp":
        raise UsageError("--expect-* need HTTP: drop tcp:// or use http:// / https://")
    report = run_probe(
        parsed,
        count=count,
        timeout_s=timeout_s,
        expectations=expectations,
        diagnose_failures=not no_diagnose,
    )
    if json_out:
        emit_json("probe", probe_report_json(report))
    else:
        out = console()
        where = parsed.host or "*"
        title = f"probe {report.mode}://{where}:{parsed.port}{parsed.path or ''}  ({report.elapsed_s * 1e3:.0f} ms)"
        from rich.text import Text

        from loopscope.render.text import printable

        out.print(Text(printable(title), style="bold"), highlight=False)
        print_table(out, PROBE_FIELDS, result_rows(report))
        _print_details(report)
        if report.findings:
            print_findings(out, report.findings)
        print_gaps(out, report.gaps)
    raise typer.Exit(exit_code_for(report.findings, fail_on))


def register(app: typer.Typer) -> None:
    """Add ``probe`` to the app."""
    app.command("probe")(probe_command)

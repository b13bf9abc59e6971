"""``loopscope traces``: self-calls in OpenTelemetry traces (a span file, or an OTLP/HTTP receiver)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from loopscope.cli.common import (
    FailOnOption,
    FormatOption,
    JsonOption,
    WideOption,
    cli_errors,
    console,
    emit_json,
    err_console,
    exit_code_for,
)
from loopscope.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from loopscope.analysis.traces import TracesReport
    from loopscope.model import Finding

__all__ = ["print_traces_report", "register", "traces_command"]


def print_traces_report(
    out: Console, report: TracesReport, findings: list[Finding], *, tail: bool = True
) -> None:
    """The tables of a traces report: services, entry endpoints, calls, worst traces, then (``tail``)
    findings and gaps."""
    from loopscope.cli.tables import print_findings, print_gaps, print_table
    from loopscope.traces.view import (
        CALL_FIELDS,
        ENDPOINT_FIELDS,
        SERVICE_FIELDS,
        WORST_FIELDS,
        call_rows,
        endpoint_rows,
        service_rows,
        worst_rows,
    )

    title = f"Services ({report.spans} spans, {report.traces} traces, {report.window_s:.1f} s)"
    print_table(out, SERVICE_FIELDS, service_rows(report), title=title, empty="no server spans")
    print_table(out, ENDPOINT_FIELDS, endpoint_rows(report.endpoints), title="Entry endpoints")
    print_table(out, CALL_FIELDS, call_rows(report.endpoints), title="Calls per entry request")
    print_table(out, WORST_FIELDS, worst_rows(report.worst_by_self_calls), title="Most self-calls")
    print_table(
        out, WORST_FIELDS, worst_rows(report.worst_by_waiting), title="Longest waiting on itself"
    )
    if tail:
        print_findings(out, findings)
        print_gaps(out, report.gaps)


@cli_errors
def traces_command(
    file: Path | None = typer.Argument(
        None,
        help="Span file: OTLP/JSON (Collector file exporter, one request per line), Jaeger or Zipkin v2 JSON.",
    ),
    listen: str | None = typer.Option(
        None,
        "--listen",
        help="Receive OTLP/HTTP (POST /v1/traces) on HOST:PORT, e.g. 127.0.0.1:4318; Ctrl-C for the report.",
    ),
    duration: float | None = typer.Option(
        None, "--duration", help="With --listen: seconds to listen (default: until Ctrl-C)."
    ),
    sample_ratio: float | None = typer.Option(
        None,
        "--sample-ratio",
        help="Head-sampling ratio the traces were kept with (0-1]: totals are also given scaled.",
    ),
    max_spans: int = typer.Option(
        2_000_000,
        "--max-spans",
        help="With --listen: spans kept at most; more are dropped and counted.",
    ),
    dot: bool = typer.Option(
        False, "--dot", help="Print the service graph as Graphviz DOT (dot -Tsvg > graph.svg)."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Decode OTLP/JSON files with the official protobuf json_format decoder (same spans, ~50x slower).",
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Which endpoints call their own service, how often per request, and how much latency it costs."""
    import gc

    from loopscope.analysis.traces import check_traces, summarize_span_rows, summarize_traces
    from loopscope.traces.read import gc_paused
    from loopscope.traces.view import format_traces_dot, traces_json

    if (file is None) == (listen is None):
        raise UsageError("give a span FILE or --listen HOST:PORT (one of them)")
    if sample_ratio is not None and not 0 < sample_ratio <= 1:
        raise UsageError("--sample-ratio must be in (0, 1]")
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be positive")
    if file is not None:
        from loopscope.traces.read import read_span_rows

        got = read_span_rows(file, strict=strict)
        extra_gaps = list(got.gaps)
        source = {"file": str(file), "format": got.format, "documents": got.documents}
        gc.freeze()  # the rows live until exit: cyclic collections need not walk them again
        with gc_paused():  # rows and walk records hold no cycles (1M spans: ~40% faster)
            report = summarize_span_rows(got.rows, sample_ratio=sample_ratio)
    else:
        from loopscope.traces.listen import listen as run_listener
        from loopscope.traces.listen import parse_listen, receiver_gaps

        host, port = parse_listen(listen or "")
        spans, stats = run_listener(
            host,
            port,
            duration_s=duration,
            max_spans=max_spans,
            on_ready=lambda rx: err_console().print(
                f"loopscope traces: receiving OTLP/HTTP on http://{rx.host}:{rx.port}/v1/traces "
                f"(protobuf or JSON; Zipkin v2 on /api/v2/spans); Ctrl-C for the report"
            ),
        )
        extra_gaps = receiver_gaps(stats)
        source = {"listen": f"{host}:{port}", "receiver": stats}
        gc.freeze()  # the spans live until exit (1M spans: ~3x faster)
        with gc_paused():
            report = summarize_traces(spans, sample_ratio=sample_ratio)
    if extra_gaps:
        from dataclasses import replace

        report = replace(report, gaps=(*extra_gaps, *report.gaps))
    findings = check_traces(report)
    if dot:
        sys.stdout.write(format_traces_dot(report.edges))
    elif json_out:
        emit_json("traces", traces_json(report, findings, source))
    else:
        print_traces_report(console(), report, findings)
    raise typer.Exit(exit_code_for(findings, fail_on))


def register(app: typer.Typer) -> None:
    """Add ``traces`` to the app."""
    app.command("traces")(traces_command)

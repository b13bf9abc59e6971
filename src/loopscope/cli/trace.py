"""``loopscope trace -- CMD``: run an app under OpenTelemetry's auto-instrumentation, receive its spans and
watch the kernel at the same time; on exit (or Ctrl-C/SIGTERM), the trace report beside the kernel's count."""

from __future__ import annotations

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
    from loopscope.analysis.watch.report import WatchReport
    from loopscope.traces.run import TracedRun

__all__ = ["register", "trace_command"]


def _traced_and_watched(
    cmd: list[str], service_name: str | None, port: int, ebpf: bool
) -> tuple[TracedRun, WatchReport]:
    """Run the command with a WatchSession polled beside it; the watch report scoped to its processes."""
    import time

    from loopscope.analysis.watch.report import summarize_watch
    from loopscope.traces.run import run_traced
    from loopscope.watch.session import WatchOptions, WatchSession
    from loopscope.watch.view import filter_report

    # full reads (owners) every second: the app starts after the first one and may live only seconds
    options = WatchOptions(ebpf=ebpf, snapshot_interval_s=0.5, full_interval_s=1.0)
    with WatchSession(options) as session:
        run = run_traced(
            cmd,
            service_name=service_name,
            receiver_port=port,
            on_tick=session.poll,
            on_ready=lambda rx, pid: err_console().print(
                f"loopscope trace: {cmd[0]} (pid {pid}) exports to http://{rx.host}:{rx.port}/v1/traces; "
                "Ctrl-C stops it and reports"
            ),
        )
        time.sleep(0.25)  # the closes of the last connections
        session.poll()
        data = session.data()
    return run, filter_report(summarize_watch(data), run.pids, ())


@cli_errors
def trace_command(
    cmd: list[str] = typer.Argument(..., help="The command to run, after --."),
    service_name: str | None = typer.Option(
        None, "--service-name", help="OTEL_SERVICE_NAME (default: the command's name)."
    ),
    port: int = typer.Option(
        0, "--receiver-port", help="OTLP receiver port on 127.0.0.1 (0: a free one)."
    ),
    no_ebpf: bool = typer.Option(False, "--no-ebpf", help="Do not load the eBPF sockops program."),
    sample_ratio: float | None = typer.Option(
        None, "--sample-ratio", help="Head-sampling ratio the app was configured with (0-1]."
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Run CMD under opentelemetry-instrument; report its self-calls from traces beside the kernel's count."""
    from dataclasses import replace

    from loopscope.analysis.traces import check_traces, summarize_traces
    from loopscope.analysis.traces.kernel import compare_kernel, kernel_findings
    from loopscope.cli.tables import print_findings, print_gaps, print_table
    from loopscope.cli.traces import print_traces_report
    from loopscope.traces.listen import receiver_gaps
    from loopscope.traces.view import KERNEL_FIELDS, kernel_json, kernel_rows, traces_json

    if sample_ratio is not None and not 0 < sample_ratio <= 1:
        raise UsageError("--sample-ratio must be in (0, 1]")
    run, watch = _traced_and_watched(cmd, service_name, port, not no_ebpf)
    report = summarize_traces(run.spans, sample_ratio=sample_ratio)
    comparison = compare_kernel(report, watch, ignore_ports=(run.receiver_port,))
    mismatch, mismatch_gaps = kernel_findings(comparison)
    gaps = (*receiver_gaps(run.receiver), *mismatch_gaps, *report.gaps, *watch.gaps)
    report = replace(report, gaps=gaps)
    findings = [*check_traces(report), *mismatch]
    source = {
        "command": cmd,
        "service_name": run.service_name,
        "returncode": run.returncode,
        "stopped_by": run.stopped_by,
        "killed": run.killed,
        "duration_s": round(run.duration_s, 3),
        "pids": run.pids,
        "receiver": run.receiver,
    }
    if json_out:
        emit_json(
            "trace", {**traces_json(report, findings, source), "kernel": kernel_json(comparison)}
        )
    else:
        out = console()
        print_traces_report(out, report, findings, tail=False)
        title = f"Kernel vs trace (kernel sources: {', '.join(comparison.sources) or 'none'})"
        print_table(out, KERNEL_FIELDS, kernel_rows(comparison), title=title, empty="no app seen")
        print_findings(out, findings)
        print_gaps(out, report.gaps)
    raise typer.Exit(exit_code_for(findings, fail_on))


def register(app: typer.Typer) -> None:
    """Add ``trace`` to the app."""
    app.command("trace")(trace_command)

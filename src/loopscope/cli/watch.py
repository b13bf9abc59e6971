"""``loopscope watch``: loopback connections over time, self-calls, amplification and pressure."""

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
    from rich.console import Group

    from loopscope.analysis.watch.model import WatchData
    from loopscope.analysis.watch.report import WatchReport
    from loopscope.model import Finding

__all__ = ["register", "watch_command"]


def _report(data: WatchData, pids: tuple[int, ...], ports: tuple[int, ...]) -> WatchReport:
    from loopscope.analysis.watch.report import summarize_watch
    from loopscope.watch.view import filter_report

    return filter_report(summarize_watch(data), pids, ports)


def _live_view(report: WatchReport) -> Group:
    from rich.console import Group

    from loopscope.cli.tables import FittedTable, make_table
    from loopscope.watch.view import APP_FIELDS, WATCH_EDGE_FIELDS, app_rows, watch_edge_rows

    title = (
        f"loopscope watch ({report.netns_label}) {report.window_s:.0f} s: {report.connections} connections, "
        f"{sum(1 for e in report.edges if e.self_call)} self-call edges  (Ctrl-C to stop)"
    )
    return Group(
        FittedTable(make_table(APP_FIELDS, app_rows(report.apps), title=title)),
        FittedTable(
            make_table(
                WATCH_EDGE_FIELDS,
                watch_edge_rows(report.edges[:15], report.window_s),
                title="Edges",
            )
        ),
    )


def _write_views(
    html: str | None,
    plot: str | None,
    data: WatchData,
    report: WatchReport,
    findings: list[Finding],
) -> None:
    """``--html`` and ``--plot`` files, each named on stderr."""
    if html is not None:
        from loopscope.report.build import write_watch_report

        done = write_watch_report(html, report, findings)
        err_console().print(f"HTML report: {done}", highlight=False, markup=False)
    if plot is not None:
        from loopscope.watch.plot import write_watch_plot

        done = write_watch_plot(plot, data, report, findings)
        err_console().print(f"plot: {done}", highlight=False, markup=False)


@cli_errors
def watch_command(
    duration: float | None = typer.Option(
        None, "--duration", help="Seconds to watch (default: until Ctrl-C)."
    ),
    pid: list[int] = typer.Option([], "--pid", help="Only the app owning this pid (repeatable)."),
    port: list[int] = typer.Option(
        [], "--port", help="Only the app listening on this port (repeatable)."
    ),
    http: bool = typer.Option(
        False, "--http", help="Count HTTP/1.x requests per connection (root; AF_PACKET on lo)."
    ),
    netns: str | None = typer.Option(
        None, "--netns", help="Namespace: NAME (/run/netns), PID or path."
    ),
    interval: float = typer.Option(
        1.0, "--interval", help="Seconds between snapshots (listeners, queues, pools)."
    ),
    refresh: float = typer.Option(1.0, "--refresh", help="Seconds between screen refreshes."),
    no_ebpf: bool = typer.Option(False, "--no-ebpf", help="Do not load the eBPF sockops program."),
    nice: int = typer.Option(
        10,
        "--nice",
        help="Lower the collector's CPU priority by this much (0: keep), so it "
        "yields to the apps it watches; kernel buffers hold the events meanwhile.",
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
    html: str | None = typer.Option(
        None,
        "--html",
        metavar="FILE",
        help="Also write a self-contained HTML report of the window.",
    ),
    plot: str | None = typer.Option(
        None,
        "--plot",
        metavar="FILE",
        help="Also plot connections/s per top edge and accept-queue fill (PNG or SVG; needs the plot extra).",
    ),
) -> None:
    """Every loopback connection over a window: who calls whom, self-calls, amplification, pressure."""
    from rich.live import Live

    from loopscope.analysis.watch.findings import check_watch
    from loopscope.cli.tables import print_findings, print_gaps, print_table
    from loopscope.watch.session import WatchOptions, run_watch
    from loopscope.watch.view import (
        APP_FIELDS,
        SELF_PATH_FIELDS,
        SOURCE_FIELDS,
        WATCH_EDGE_FIELDS,
        app_rows,
        self_path_rows,
        source_rows,
        watch_edge_rows,
        watch_json,
    )

    if duration is not None and duration <= 0:
        raise UsageError("--duration must be positive")
    if interval <= 0 or refresh <= 0:
        raise UsageError("--interval and --refresh must be positive")
    if nice < 0 or nice > 19:
        raise UsageError("--nice must be between 0 and 19")
    if nice:
        import os

        os.nice(nice)
    options = WatchOptions(
        netns=netns,
        ebpf=not no_ebpf,
        http=http,
        http_ports=tuple(port) if http else (),
        snapshot_interval_s=interval,
    )
    pids, ports = tuple(pid), tuple(port)
    out = console()
    if json_out:
        data = run_watch(options, duration)
    else:
        live_console = out if out.is_terminal else err_console()
        with Live(console=live_console, refresh_per_second=4, transient=True) as live:
            data = run_watch(
                options,
                duration,
                lambda d: live.update(_live_view(_report(d, pids, ports))),
                refresh,
            )
    report = _report(data, pids, ports)
    findings = check_watch(report)
    _write_views(html, plot, data, report, findings)
    if json_out:
        emit_json("watch", watch_json(report, findings))
    else:
        print_table(out, SOURCE_FIELDS, source_rows(report), title="Sources")
        title = (
            f"Apps ({report.netns_label}, {report.window_s:.1f} s, {report.connections} connections, "
            f"client pid known for {report.client_pid_known})"
        )
        print_table(out, APP_FIELDS, app_rows(report.apps), title=title, empty="no listeners")
        print_table(
            out,
            WATCH_EDGE_FIELDS,
            watch_edge_rows(report.edges, report.window_s),
            title="Loopback call graph",
            empty="no connections to local listeners",
        )
        if any(a.self_paths for a in report.apps):
            print_table(out, SELF_PATH_FIELDS, self_path_rows(report.apps), title="Self-call paths")
        print_findings(out, findings)
        print_gaps(out, report.gaps)
    raise typer.Exit(exit_code_for(findings, fail_on))


def register(app: typer.Typer) -> None:
    """Add ``watch`` to the app."""
    app.command("watch")(watch_command)

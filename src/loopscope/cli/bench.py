"""``loopscope bench``: what one request/response costs on each loopback path, measured the same way."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from loopscope.analysis.bench.results import BenchConfig, BenchReport, Engine, PinMode
from loopscope.analysis.stats import latency_json_ns
from loopscope.bench.compare import CompareResult, run_compare
from loopscope.bench.paths import PATHS
from loopscope.bench.runner import MAX_SAMPLES_PER_CELL, run_bench, validate_config
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
from loopscope.errors import UsageError
from loopscope.render.jsonable import to_jsonable

__all__ = [
    "bench_command",
    "format_compare_table",
    "format_engine_line",
    "format_latency_table",
    "format_size",
    "format_throughput_table",
    "parse_paths",
    "parse_sizes",
    "register",
]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
}


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"1,1k,64KiB,1m"`` -> ``(1, 1024, 65536, 1048576)`` (K/M are powers of 1024).

    Raises:
        UsageError: an item is not a positive size.
    """
    out: list[int] = []
    for item in text.split(","):
        raw = item.strip().lower()
        num = raw.rstrip("kmib")
        unit = raw[len(num) :]
        if not num.isdigit() or unit not in _UNITS or int(num) <= 0:
            raise UsageError(f"bad size {item.strip()!r}: use bytes like 1,1024,64k,1m")
        out.append(int(num) * _UNITS[unit])
    return tuple(out)


def parse_paths(text: str | None) -> tuple[str, ...]:
    """``"tcp4,unix"`` -> ``("tcp4", "unix")``; None or ``"all"`` -> every path.

    Raises:
        UsageError: unknown path name.
    """
    if text is None or text.strip() == "all":
        return PATHS
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    for name in names:
        if name not in PATHS:
            raise UsageError(f"unknown path {name!r}; known: {', '.join(PATHS)}")
    return names


def format_size(size_bytes: int) -> str:
    """1 -> ``"1 B"``, 65536 -> ``"64 KiB"``, 1048576 -> ``"1 MiB"``, 1500 -> ``"1500 B"``."""
    if size_bytes >= 1 << 20 and size_bytes % (1 << 20) == 0:
        return f"{size_bytes >> 20} MiB"
    if size_bytes >= 1024 and size_bytes % 1024 == 0:
        return f"{size_bytes >> 10} KiB"
    return f"{size_bytes} B"


def _us(ns: int) -> str:
    us = ns / 1e3
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:,.0f}"


def format_latency_table(report: BenchReport) -> Table:
    """Round-trip percentiles per path and size (microseconds) and the ratio to an in-process call."""
    pin = f"pin {report.config.pin.value}"
    if report.client_cpu is not None:
        pin += f": client CPU {report.client_cpu}, server CPU {report.server_cpu}"
    t = Table(
        title=f"[bold]Round trip[/bold] ({pin})",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
    )
    # A narrow terminal folds a label onto two lines rather than cutting it or a figure
    t.add_column("path", overflow="fold")
    for head in ("size", "n", "p50 us", "p90 us", "p99 us", "p99.9 us", "x call"):
        t.add_column(head, justify="right", no_wrap=True)
    for c in report.cells:
        if c.summary is None:
            continue
        s = c.summary
        ratio = "-" if c.ratio_to_call is None else f"{c.ratio_to_call:,.0f}"
        if c.path == "call":
            ratio = "1"
        n = f"{s.count}" + ("*" if c.truncated else "")
        t.add_row(
            c.label,
            format_size(c.size_bytes),
            n,
            _us(s.p50_ns),
            _us(s.p90_ns),
            _us(s.p99_ns),
            _us(s.p999_ns),
            ratio,
        )
    return t


def format_engine_line(report: BenchReport) -> str:
    """The engine that timed the cells, the paths left to Python, and why not native (2nd line).

    Example: ``"engine: native (compiled loops, rr.c); python: http-keepalive"``;
    ``"engine: python\n  native unavailable: no C compiler 'cc' found: install gcc ..."``.
    """
    ran = [c for c in report.cells if c.engine is not None]
    python_paths = list(dict.fromkeys(c.path for c in ran if c.engine is Engine.PYTHON))
    if report.engine is Engine.NATIVE:
        line = "engine: native (compiled loops, rr.c)"
        if report.server_engine is not Engine.NATIVE:
            line += "; server echo: python"
        if python_paths:
            line += f"; python: {', '.join(python_paths)}"
            if "call" in python_paths:
                line += "\n  x call: each row against the in-process call of its own engine"
    else:
        line = "engine: python"
    if report.engine_reason:
        line += f"\n  {report.engine_reason}"
    return line


def format_throughput_table(report: BenchReport) -> Table:
    """Stream throughput per path."""
    t = Table(title="[bold]Stream throughput[/bold]", box=box.SIMPLE_HEAD, title_justify="left")
    t.add_column("path", no_wrap=True)
    for head in ("GB/s", "bytes", "seconds", "send size"):
        t.add_column(head, justify="right", no_wrap=True)
    for r in report.throughput:
        t.add_row(
            r.label,
            f"{r.bytes_per_s / 1e9:.2f}",
            f"{r.total_bytes:,}",
            f"{r.elapsed_ns / 1e9:.2f}",
            format_size(r.chunk_bytes),
        )
    return t


def format_compare_table(results: list[CompareResult]) -> Table:
    """loopscope vs the reference tool on the same path, with the ratio and the goal."""
    t = Table(
        title="[bold]Same path, reference tools[/bold]", box=box.SIMPLE_HEAD, title_justify="left"
    )
    for head in ("metric", "loopscope", "tool", "tool value", "ratio", "goal"):
        t.add_column(head, justify="left" if head in ("metric", "tool") else "right", no_wrap=True)
    for r in results:
        rate = "bytes_per_s" in r.metric
        ours = f"{r.loopscope_value / 1e9:.2f} GB/s" if rate else f"{r.loopscope_value:.1f} us"
        theirs = f"{r.tool_value / 1e9:.2f} GB/s" if rate else f"{r.tool_value:.1f} us"
        goal = "" if r.goal is None else f"{r.goal} {'met' if r.meets_goal else 'MISSED'}"
        t.add_row(r.metric, ours, r.tool, theirs, f"{r.ratio:.3f}", goal)
    return t


def _print_report(
    out: Console, report: BenchReport, compare: list[CompareResult], notes: list[str]
) -> None:
    from loopscope.cli.tables import print_findings

    out.print(format_latency_table(report))
    skipped = [c for c in report.cells if c.skipped_reason]
    for c in skipped:
        out.print(
            f"  skipped: {c.label} {format_size(c.size_bytes)}: {c.skipped_reason}", markup=False
        )
    if any(c.truncated for c in report.cells):
        out.print(
            f"  * stopped by --duration-s (or {MAX_SAMPLES_PER_CELL:,} samples) before --count"
        )
    timer = f"{report.timer_overhead_ns} ns"
    if report.native_timer_overhead_ns is not None:
        timer = f"{report.native_timer_overhead_ns} ns (native), {timer} (python)"
    out.print(f"  timer overhead included in every figure: {timer}")
    out.print(f"  {format_engine_line(report)}", markup=False)
    if report.throughput:
        out.print(format_throughput_table(report))
    if compare:
        out.print(format_compare_table(compare))
    for note in notes:
        out.print(f"  {note}", markup=False)
    print_findings(out, report.findings)


@cli_errors
def bench_command(
    paths: str | None = typer.Option(
        None, "--paths", help=f"Comma list or all: {','.join(PATHS)}."
    ),
    sizes: str = typer.Option(
        "1,1024,65536,1048576", "--sizes", help="Payload bytes each way (k/m ok)."
    ),
    count: int = typer.Option(2000, "--count", help="Round trips per path and size."),
    warmup: int = typer.Option(
        50, "--warmup", help="Untimed round trips first, per path and size."
    ),
    duration_s: float = typer.Option(
        2.0, "--duration-s", help="Time cap per path and size, seconds."
    ),
    pin: PinMode = typer.Option(
        PinMode.NONE, "--pin", help="Client and server CPUs: same, different, none."
    ),
    throughput: bool = typer.Option(
        True, "--throughput/--no-throughput", help="Stream throughput too."
    ),
    throughput_s: float = typer.Option(1.0, "--throughput-s", help="Seconds per throughput test."),
    compare: bool = typer.Option(
        False, "--compare", help="Also run sockperf and iperf3 on TCP 127.0.0.1."
    ),
    compare_s: int = typer.Option(2, "--compare-s", help="Seconds per reference-tool run."),
    plot: str | None = typer.Option(None, "--plot", help="Write a latency plot (.png or .svg)."),
    engine: Engine = typer.Option(
        Engine.AUTO, "--engine", help="Round-trip loops: native (C, needs cc), python, auto."
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Round-trip latency (p50/p90/p99/p99.9) of every loopback path, side by side, vs a function call."""
    config = BenchConfig(
        paths=parse_paths(paths),
        sizes_bytes=parse_sizes(sizes),
        count=count,
        warmup=warmup,
        duration_s=duration_s,
        pin=pin,
        throughput=throughput,
        throughput_s=throughput_s,
        engine=engine,
    )
    if compare_s < 1:
        raise UsageError("--compare-s must be >= 1")
    validate_config(config)
    if plot is not None:
        from loopscope.bench.plot import check_plot_target

        check_plot_target(plot)
    report = _run_with_progress(config, quiet=json_out)
    if report.interrupted:
        done = sum(1 for c in report.cells if c.summary is not None)
        if not done:
            raise KeyboardInterrupt  # nothing finished: "interrupted", exit 130 (cli_errors)
        sys.stderr.write(
            f"loopscope bench: interrupted; {done} of {len(report.cells)} cells finished\n"
        )
    results: list[CompareResult] = []
    notes: list[str] = []
    if compare and not report.interrupted:
        results, notes = run_compare(
            client_cpu=report.client_cpu,
            server_cpu=report.server_cpu,
            rr_duration_s=compare_s,
            stream_duration_s=compare_s,
            engine=report.engine,
        )
    plot_path = None
    if plot is not None:
        from loopscope.bench.plot import write_plot

        plot_path = str(write_plot(report, plot))
    if json_out:
        body: dict[str, Any] = {
            "report": _report_json(report),
            "compare": results,
            "compare_notes": notes,
            "plot": plot_path,
            "findings": report.findings,
        }
        emit_json("bench", body)
    else:
        out = console()
        _print_report(out, report, results, notes)
        if plot_path:
            out.print(f"plot written to {plot_path}")
    raise typer.Exit(exit_code_for(report.findings, fail_on))


def _report_json(report: BenchReport) -> dict[str, Any]:
    """``to_jsonable(report)`` with each cell's summary in the nanoseconds shape
    (:func:`~loopscope.analysis.stats.latency_json_ns`)."""
    body: dict[str, Any] = to_jsonable(report)
    for cell, c_json in zip(report.cells, body["cells"], strict=True):
        c_json["summary"] = latency_json_ns(cell.summary)
    return body


def _run_with_progress(config: BenchConfig, *, quiet: bool) -> BenchReport:
    if quiet:
        return run_bench(config)
    from loopscope.cli.progress import run_progress

    # auto_refresh off: no refresh thread competing with the measured client for the GIL
    with run_progress(auto_refresh=False) as prog:
        steps = len(config.paths) * len(config.sizes_bytes)
        steps += len(config.paths) if config.throughput else 0  # at most one per stream path
        task = prog.add_task("starting servers", total=steps)
        started = [False]

        def step(text: str) -> None:
            prog.update(task, description=text, advance=1 if started[0] else 0)
            started[0] = True
            prog.refresh()

        return run_bench(config, progress=step)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the app."""
    app.command("bench")(bench_command)

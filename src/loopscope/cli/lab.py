"""``loopscope lab``: the self-call scenario on real servers over loopback, measured against the model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from loopscope.analysis.stats import latency_json_s
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
from loopscope.cli.simulate import parse_list
from loopscope.errors import UsageError
from loopscope.model import Finding, Severity
from loopscope.render.jsonable import to_jsonable
from loopscope.render.text import printable

if TYPE_CHECKING:  # the runner needs numpy (the sim extra): imported when the command runs
    from loopscope.lab.runner import Calibration, LabConfig, LabCurve

__all__ = ["check_lab", "default_lab_rates", "lab_command", "register"]


def default_lab_rates(cfg: LabConfig, cal: Calibration) -> tuple[float, ...]:
    """20%, 40%, 60%, 80% and 95% of the in-process design's capacity N / (work + fanout x child)."""
    capacity = cfg.threads / (cal.work_s + cfg.fanout * cal.child_s)
    return tuple(float(f"{capacity * f:.2g}") for f in (0.2, 0.4, 0.6, 0.8, 0.95))


def check_lab(curves: list[LabCurve]) -> list[Finding]:
    """``GOODPUT_COLLAPSE`` (high) for a design whose measured goodput fell under half the offered rate."""
    findings = []
    for c in curves:
        bad = [p for p in c.points if p.measured.goodput_per_s < 0.5 * p.rate_per_s]
        if bad:
            p = bad[0]
            m = p.measured
            findings.append(
                Finding(
                    code="GOODPUT_COLLAPSE",
                    severity=Severity.HIGH,
                    subject=f"lab design {c.design}",
                    evidence=(
                        f"at {p.rate_per_s:g}/s offered: {m.goodput_per_s:.1f}/s succeeded, "
                        f"{m.timeouts} timeouts, {m.errors} errors of {m.sent}"
                    ),
                    remedy="call the code in-process or send internal calls to a separate pool",
                )
            )
    return findings


def lab_command(
    compare: str = typer.Option(
        "selfcall,inprocess", "--compare", help="Comma list of selfcall, inprocess, pool."
    ),
    rates: str | None = typer.Option(
        None,
        "--rates",
        help="Comma list of offered rates/s (default: 20-95% of the in-process capacity).",
    ),
    server: str = typer.Option("gunicorn", "--server", help="gunicorn (gthread) or waitress."),
    threads: int = typer.Option(4, "--threads", help="Worker threads of the server (N)."),
    pool_threads: int = typer.Option(
        4, "--pool-threads", help="Threads of the separate pool server."
    ),
    work_ms: float = typer.Option(20.0, "--work-ms", help="Endpoint work (a sleep), ms."),
    child_ms: float = typer.Option(20.0, "--child-ms", help="Each callee's work, ms."),
    fanout: int = typer.Option(1, "--fanout", help="Internal calls per request (sequential)."),
    duration_s: float = typer.Option(4.0, "--duration", help="Seconds of load per point."),
    call_timeout_ms: float = typer.Option(
        1000.0, "--call-timeout-ms", help="Internal call timeout, ms."
    ),
    timeout_s: float = typer.Option(
        2.0, "--timeout", help="Load generator timeout per request, s."
    ),
    max_requests: int = typer.Option(5000, "--max-requests", help="Cap on requests per point."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write measured vs simulated curves (PNG/SVG)."
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Run designs on real servers at rising rates; compare with the simulation; name the knees."""
    from loopscope.lab.runner import LabConfig, calibrate, run_lab

    designs = tuple(parse_list(compare, str, "design"))
    if threads < 1 or pool_threads < 1 or fanout < 1 or duration_s <= 0 or timeout_s <= 0:
        raise UsageError("threads, fanout, duration and timeout must be positive")
    cfg = LabConfig(
        designs=designs,
        server=server,
        threads=threads,
        pool_threads=pool_threads,
        work_ms=work_ms,
        child_ms=child_ms,
        fanout=fanout,
        call_timeout_ms=call_timeout_ms,
        request_timeout_s=timeout_s,
        duration_s=duration_s,
        max_requests=max_requests,
    )
    from loopscope.cli.progress import run_progress

    with run_progress(disable=json_out) as bar:
        task = bar.add_task("calibrating on a lab server", total=None)
        cal = calibrate(cfg)
        rate_list = (
            tuple(parse_list(rates, float, "rate")) if rates else default_lab_rates(cfg, cal)
        )
        cfg = LabConfig(**{**{f: getattr(cfg, f) for f in cfg.__slots__}, "rates_per_s": rate_list})
        bar.update(task, total=len(designs) * len(rate_list), completed=0)

        def step(label: str) -> None:
            bar.update(task, description=f"lab: {label}", advance=1)

        curves = run_lab(cfg, cal, step)
    done, wanted = sum(len(c.points) for c in curves), len(designs) * len(rate_list)
    if done < wanted:  # Ctrl-C, TERM or HUP: the servers are stopped, the finished points shown
        sys.stderr.write(f"loopscope lab: interrupted; {done} of {wanted} points finished\n")
    findings = check_lab(curves)
    plot_path = _plot(curves, plot, cfg, cal) if plot is not None else None
    if json_out:
        emit_json(
            "lab",
            {
                "config": to_jsonable(cfg),
                "calibration": to_jsonable(cal),
                "curves": [_curve_json(c) for c in curves],
                "findings": to_jsonable(findings),
                "plot": str(plot_path) if plot_path else None,
            },
        )
    else:
        _print(curves, cal, findings, plot_path)
    raise typer.Exit(exit_code_for(findings, fail_on))


def _curve_json(c: LabCurve) -> dict[str, Any]:
    body = to_jsonable(c)
    for p, point in zip(c.points, body["points"], strict=True):
        point["measured"].pop("latencies_s", None)
        point["measured"]["latency"] = latency_json_s(p.measured.latency)
        point["simulated"]["latency"] = latency_json_s(p.simulated.latency)
    return dict(body)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}" if v >= 0.1 else f"{v * 1000:.1f}"


def _print(
    curves: list[LabCurve], cal: Calibration, findings: list[Finding], plot: Path | None
) -> None:
    out = console()
    table = Table(
        title=(
            f"lab: measured vs simulated (hop {cal.hop_s * 1e6:.0f} us, work "
            f"{cal.work_s * 1000:.1f} ms, child {cal.child_s * 1000:.1f} ms, measured here)"
        ),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for i, h in enumerate(
        [
            "design",
            "rate/s",
            "ok/s",
            "p50 ms",
            "p99 ms",
            "t/o",
            "5xx",
            "lag ms",
            "sim ok/s",
            "sim p99",
            "sim dlk",
        ]
    ):
        table.add_column(h, no_wrap=True, justify="left" if i == 0 else "right")
    for c in curves:
        for p in c.points:
            m, s = p.measured, p.simulated
            table.add_row(
                c.design,
                f"{p.rate_per_s:g}",
                f"{m.goodput_per_s:.1f}",
                _ms(m.latency.p50_s if m.latency is not None else None),
                _ms(m.p99_all_s),
                str(m.timeouts),
                str(m.errors),
                _ms(m.max_send_lag_s),
                f"{s.throughput_per_s:.1f}",
                _ms(s.p99_all_s),
                str(s.deadlock_episodes),
            )
    out.print(table)
    out.print("p99 counts failures at the client timeout; lag = load generator's worst send delay")
    for c in curves:
        km = f"{c.knee_measured_per_s:g}/s" if c.knee_measured_per_s else "none in range"
        ks = f"{c.knee_simulated_per_s:g}/s" if c.knee_simulated_per_s else "none in range"
        last = c.points[-1]
        out.print(
            f"knee of {c.design}: measured {km}, simulated {ks}; at {last.rate_per_s:g}/s "
            f"{last.measured.goodput_per_s:.1f}/s succeeded ({100 * last.measured.goodput_per_s / last.rate_per_s:.0f}%)"
        )
    for f in findings:
        out.print(
            Text.assemble(
                (f.severity.value.upper(), "bold"),
                printable(f" {f.code} {f.subject}: {f.evidence}"),
            )
        )
    if plot is not None:
        out.print(f"plot: {plot}", markup=False)


def _plot(curves: list[LabCurve], path: Path, cfg: LabConfig, cal: Calibration) -> Path:
    from loopscope.sim.plot import Series, plot_curves

    series = []
    for c in curves:
        xs = tuple(p.rate_per_s for p in c.points)
        series.append(
            Series(
                label=f"{c.design} measured",
                color_key=c.design,
                offered_per_s=xs,
                goodput_per_s=tuple(p.measured.goodput_per_s for p in c.points),
                p99_s=tuple(p.measured.p99_all_s for p in c.points),
                knee_per_s=c.knee_measured_per_s,
                style=0,
            )
        )
        series.append(
            Series(
                label=f"{c.design} simulated",
                color_key=c.design,
                offered_per_s=xs,
                goodput_per_s=tuple(p.simulated.throughput_per_s for p in c.points),
                p99_s=tuple(p.simulated.p99_all_s for p in c.points),
                knee_per_s=c.knee_simulated_per_s,
                style=1,
            )
        )
    title = (
        f"lab ({cfg.server} gthread/threads={cfg.threads}, work {cfg.work_ms:g} ms + {cfg.fanout} x "
        f"{cfg.child_ms:g} ms, {cfg.duration_s:g} s per point) vs model (hop {cal.hop_s * 1e6:.0f} us)"
    )
    return plot_curves(series, path, title=title)


def register(app: typer.Typer) -> None:
    """Add ``lab`` to the app."""
    app.command("lab")(cli_errors(lab_command))

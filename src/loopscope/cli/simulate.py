"""``loopscope simulate``: a queueing model of worker pools whose requests call back into them."""

from __future__ import annotations

import dataclasses
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
from loopscope.errors import UsageError
from loopscope.render.jsonable import to_jsonable
from loopscope.render.text import printable
from loopscope.sim.result import SimResult
from loopscope.sim.scenario import DESIGNS, DistKind, Scenario, ServiceDist, make_design

if TYPE_CHECKING:  # the engines need numpy (the sim extra): imported when a command runs
    from loopscope.sim.sweep import SweepCurve

__all__ = ["parse_list", "register", "resolve_hop_s", "result_row", "simulate_command"]


def parse_list(text: str, kind: type[Any], what: str) -> list[Any]:
    """``"1,2,4"`` -> ``[1, 2, 4]``.

    Raises:
        UsageError: an element does not parse.
    """
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"bad {what} list {text!r}: use comma-separated values") from None


def resolve_hop_s(calibrate: str | None, hop_us: float) -> tuple[float, str]:
    """The per-hop cost and where it came from: a bench JSON file, a fresh measurement, or the option."""
    if calibrate is None:
        return hop_us / 1e6, "--hop-us"
    from loopscope.lab import calibrate as cal

    if calibrate == "measure":
        return (
            cal.measure_loopback_hop_s(),
            "measured: GET on a new 127.0.0.1 connection, median of 200",
        )
    return cal.read_bench_hop_s(Path(calibrate)), f"bench file {calibrate}"


def _curves_json(curves: list[SweepCurve]) -> list[dict[str, Any]]:
    """``to_jsonable(curves)`` with each result's latency in the seconds shape
    (:func:`~loopscope.analysis.stats.latency_json_s`)."""
    body: list[dict[str, Any]] = to_jsonable(curves)
    for curve, c_json in zip(curves, body, strict=True):
        for r, r_json in zip(curve.results, c_json["results"], strict=True):
            r_json["latency"] = latency_json_s(r.latency)
    return body


def result_row(label: str, m: int, r: SimResult) -> list[str]:
    """Table cells of one result."""
    lat = latency_json_s(r.latency)

    def num(v: float | None, scale: float = 1.0) -> str:
        if v is None:
            return "-"
        v *= scale
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"

    return [
        label,
        str(m),
        f"{r.offered_per_s:g}",
        num(r.throughput_per_s),
        num(lat["p50_s"], 1000),
        num(lat["p99_s"], 1000),
        f"{r.utilisation_pct:.0f}",
        f"{r.blocked_pct:.0f}",
        num(r.mean_queue_len),
        str(r.timeouts + r.unfinished),
        str(r.errors),
        str(r.rejected),
        str(r.deadlock_episodes),
    ]


_HEADERS = [
    "design",
    "M",
    "rate/s",
    "ok/s",
    "p50 ms",
    "p99 ms",
    "util%",
    "blk%",
    "queue",
    "t/o",
    "5xx",
    "503",
    "dlk",
]


def simulate_command(
    designs: str = typer.Option(
        "selfcall,inprocess", "--design", help=f"Comma list of {', '.join(DESIGNS)}."
    ),
    rate: float = typer.Option(
        100.0, "--rate", help="External arrivals per second (lambda), total."
    ),
    sweep: str | None = typer.Option(
        None, "--sweep", help="'lambda': run a range of rates and plot."
    ),
    rates: str | None = typer.Option(None, "--rates", help="Comma list of rates for --sweep."),
    instances: str = typer.Option("1", "--instances", help="M, or a comma list (e.g. 1,2,4)."),
    workers: int = typer.Option(8, "--workers", help="N worker threads per instance."),
    pool_workers: int = typer.Option(8, "--pool-workers", help="Threads of the separate pool."),
    fanout: int = typer.Option(2, "--fanout", help="Internal calls per external request."),
    sequential: bool = typer.Option(False, "--sequential", help="Make the calls one by one."),
    service: DistKind = typer.Option(
        DistKind.EXPONENTIAL, "--service", help="Service time distribution."
    ),
    work_ms: float = typer.Option(10.0, "--work-ms", help="Mean work of the endpoint, ms."),
    child_ms: float | None = typer.Option(
        None, "--child-ms", help="Mean work of each callee (default --work-ms)."
    ),
    sigma: float = typer.Option(1.0, "--sigma", help="Lognormal shape."),
    queue_limit: int | None = typer.Option(
        None, "--queue-limit", help="Bound the queue (503 when full)."
    ),
    queue_timeout_ms: float | None = typer.Option(
        None, "--queue-timeout-ms", help="Drop requests queued longer."
    ),
    call_timeout_ms: float | None = typer.Option(
        1000.0, "--call-timeout-ms", help="Internal call timeout; 0: none."
    ),
    request_timeout_ms: float | None = typer.Option(
        2000.0, "--request-timeout-ms", help="Client timeout; 0: none."
    ),
    hop_us: float = typer.Option(
        400.0, "--hop-us", help="Round trip of one loopback HTTP call, us."
    ),
    calibrate: str | None = typer.Option(
        None, "--calibrate", help="bench --json FILE, or 'measure'."
    ),
    requests: int = typer.Option(20_000, "--requests", help="External requests per run."),
    constant_arrivals: bool = typer.Option(
        False, "--constant-arrivals", help="Arrivals every 1/lambda."
    ),
    engine: str = typer.Option(
        "fast", "--engine", help="fast (heapq loop) or simpy (reference model)."
    ),
    seed: int = typer.Option(1, "--seed"),
    plot: Path | None = typer.Option(
        None, "--plot", help="With --sweep: write a PNG/SVG plot here."
    ),
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Simulate M instances x N workers with internal calls: throughput, latency, deadlocks."""
    from loopscope.sim.sweep import capacity_per_s, check_results, default_rates, run_sweep

    if sweep not in (None, "lambda"):
        raise UsageError(f"--sweep takes 'lambda', not {sweep!r}")
    if engine not in ("fast", "simpy"):
        raise UsageError("--engine is fast or simpy")
    hop_s, hop_source = resolve_hop_s(calibrate, hop_us)
    work = ServiceDist(kind=service, mean_s=work_ms / 1000.0, sigma=sigma)
    child = dataclasses.replace(
        work, mean_s=(child_ms if child_ms is not None else work_ms) / 1000.0
    )
    tree = {
        d: make_design(d, fanout=fanout, work=work, child_work=child, parallel=not sequential)
        for d in parse_list(designs, str, "design")
    }
    ms_or_none = {
        k: (v / 1000.0 if v else None)
        for k, v in (("q", queue_timeout_ms), ("c", call_timeout_ms), ("r", request_timeout_ms))
    }
    base = Scenario(
        root=next(iter(tree.values())),
        workers=workers,
        pool_workers=pool_workers,
        queue_limit=queue_limit,
        queue_timeout_s=ms_or_none["q"],
        call_timeout_s=ms_or_none["c"],
        request_timeout_s=ms_or_none["r"],
        hop_s=hop_s,
        requests=requests,
        seed=seed,
        poisson=not constant_arrivals,
    )
    counts = parse_list(instances, int, "instances")
    if sweep:
        ref = tree.get("inprocess") or make_design(
            "inprocess", fanout=fanout, work=work, child_work=child
        )
        rate_list = (
            parse_list(rates, float, "rate")
            if rates
            else default_rates(
                capacity_per_s(ref, workers, min(counts)), capacity_per_s(ref, workers, max(counts))
            )
        )
    else:
        rate_list = [rate]
    if engine == "simpy":
        from loopscope.sim.model import simulate_simpy as run_engine
    else:
        from loopscope.sim.engine import simulate_fast as run_engine
    from loopscope.cli.progress import run_progress

    with run_progress(disable=json_out) as bar:
        task = bar.add_task("simulating", total=len(tree) * len(counts) * len(rate_list))

        def step(label: str) -> None:
            bar.update(task, description=f"simulating {label}", advance=1)

        curves = []
        try:  # one curve at a time: Ctrl-C (or TERM/HUP) keeps the curves that finished
            for name, root in tree.items():
                for m in counts:
                    curves += run_sweep(
                        base, {name: root}, rate_list, [m], engine=run_engine, progress=step
                    )
        except KeyboardInterrupt:
            if not curves:
                raise  # nothing finished: "interrupted", exit 130
            sys.stderr.write(
                f"loopscope simulate: interrupted; {len(curves)} of "
                f"{len(tree) * len(counts)} curves finished\n"
            )
    findings = check_results(curves)
    plot_path = _plot(curves, plot, base, hop_s) if plot is not None else None
    if json_out:
        emit_json(
            "simulate",
            {
                "hop_s": hop_s,
                "hop_source": hop_source,
                "engine": engine,
                "scenario": to_jsonable(dataclasses.replace(base, root=tree[curves[0].design])),
                "curves": _curves_json(curves),
                "findings": to_jsonable(findings),
                "plot": str(plot_path) if plot_path else None,
            },
        )
    else:
        _print(curves, findings, hop_s, hop_source, plot_path)
    raise typer.Exit(exit_code_for(findings, fail_on))


def _plot(curves: list[SweepCurve], path: Path, base: Scenario, hop_s: float) -> Path:
    from loopscope.sim.plot import Series, plot_curves

    counts = sorted({c.instances for c in curves})
    series = [
        Series(
            label=f"{c.design} M={c.instances}",
            color_key=c.design,
            offered_per_s=tuple(r.offered_per_s for r in c.results),
            goodput_per_s=tuple(r.throughput_per_s for r in c.results),
            p99_s=tuple(r.p99_all_s for r in c.results),
            knee_per_s=c.knee_per_s,
            style=counts.index(c.instances),
        )
        for c in curves
    ]
    title = (
        f"simulated: N={base.workers} workers/instance, hop {hop_s * 1e6:.0f} us, "
        f"call timeout {base.call_timeout_s} s, {base.requests} requests per point"
    )
    return plot_curves(series, path, title=title, log_x=True)


def _print(
    curves: list[SweepCurve], findings: list[Any], hop_s: float, source: str, plot: Path | None
) -> None:
    out = console()
    table = Table(
        title=f"simulation (hop {hop_s * 1e6:.0f} us from {source})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for i, header in enumerate(_HEADERS):
        table.add_column(header, no_wrap=True, justify="left" if i == 0 else "right")
    for c in curves:
        for r in c.results:
            table.add_row(*result_row(c.design, c.instances, r))
    out.print(table)
    for c in curves:
        if len(c.results) > 1:
            knee = f"{c.knee_per_s:g}/s" if c.knee_per_s is not None else "none in range"
            out.print(f"knee of {c.design} with M={c.instances}: {knee}")
    for f in findings[:8]:
        out.print(
            Text.assemble(
                (f.severity.value.upper(), "bold"),
                printable(f" {f.code} {f.subject}: {f.evidence}"),
            )
        )
    if len(findings) > 8:
        out.print(f"... and {len(findings) - 8} more findings (--json for all)")
    if plot is not None:
        out.print(f"plot: {plot}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the app."""
    app.command("simulate")(cli_errors(simulate_command))

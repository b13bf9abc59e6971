"""Plot a bench report: p50 latency by path and payload size, log-log, p99 as a shaded band.

Needs matplotlib (the ``plot`` extra); the Agg backend is used, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopscope.analysis.bench.results import BenchReport
from loopscope.errors import UsageError

__all__ = ["PLOT_SUFFIXES", "check_plot_target", "write_plot"]

PLOT_SUFFIXES = (".png", ".svg")


def check_plot_target(path: str | Path) -> Path:
    """Fail early (before a benchmark runs) on a bad plot file name or a missing matplotlib.

    Raises:
        UsageError: suffix not .png/.svg, or matplotlib not installed.
    """
    out = Path(path)
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"plot file must end in .png or .svg, got {out.name!r}")
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'loopscope[plot]'")
    return out


def write_plot(report: BenchReport, path: str | Path) -> Path:
    """Write the latency plot of ``report`` to ``path`` (.png or .svg).

    One line per path: x = payload size in bytes, y = p50 round trip in microseconds (both log
    scale); the band under each line reaches up to its p99. The title names the pinning.

    Returns:
        The written path.

    Raises:
        UsageError: matplotlib missing, unknown suffix, or no measured cell.
    """
    out = check_plot_target(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("--plot needs matplotlib: pip install 'loopscope[plot]'") from exc
    series: dict[str, list[tuple[int, float, float]]] = {}
    for cell in report.cells:
        if cell.summary is None:
            continue
        series.setdefault(cell.label, []).append(
            (cell.size_bytes, cell.summary.p50_ns / 1e3, cell.summary.p99_ns / 1e3)
        )
    if not series:
        raise UsageError("nothing to plot: every cell was skipped")
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays searchable text
        _draw(plt, report, series, out)
    return out


def _draw(
    plt: Any, report: BenchReport, series: dict[str, list[tuple[int, float, float]]], out: Path
) -> None:
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    try:
        for label, pts in series.items():
            pts.sort()
            xs = [p[0] for p in pts]
            p50 = [p[1] for p in pts]
            p99 = [p[2] for p in pts]
            (line,) = ax.plot(xs, p50, marker="o", label=label)
            ax.fill_between(xs, p50, p99, color=line.get_color(), alpha=0.08)
        ax.set_xscale("log", base=2)
        sizes = sorted({p[0] for pts in series.values() for p in pts})
        ax.set_xticks(sizes, [_size_label(v) for v in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("payload each way (bytes)")
        ax.set_ylabel("round trip, us (line p50, band to p99)")
        pin = f"pin {report.config.pin.value}"
        if report.client_cpu is not None:
            pin += f"; client CPU {report.client_cpu}, server CPU {report.server_cpu}"
        ax.set_title(f"loopscope bench: round trip by path ({pin})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)


def _size_label(size_bytes: int) -> str:
    if size_bytes >= 1 << 20 and size_bytes % (1 << 20) == 0:
        return f"{size_bytes >> 20} MiB"
    if size_bytes >= 1024 and size_bytes % 1024 == 0:
        return f"{size_bytes >> 10} KiB"
    return f"{size_bytes} B"

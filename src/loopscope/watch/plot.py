"""``watch --plot FILE``: connections/s per top edge and accept-queue fill over the window, self-calls
in red, findings as dashed lines on the time axis (matplotlib, Agg backend, PNG or SVG).

Needs the ``plot`` extra: ``pip install 'loopscope[plot]'``. The series come from the pure
:func:`loopscope.analysis.watch.timeline.build_timeline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loopscope.analysis.watch.model import WatchData
from loopscope.analysis.watch.report import WatchReport
from loopscope.analysis.watch.timeline import Timeline, build_timeline
from loopscope.errors import BackendUnavailable, UsageError
from loopscope.model import Finding

__all__ = ["SELF_CALL_COLOR", "plot_timeline", "write_watch_plot"]

SELF_CALL_COLOR = "#d62728"
"""Self-call edges (the same red as the HTML report)."""
_OTHER_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22")


def plot_timeline(timeline: Timeline, path: Path, *, title: str) -> Path:
    """Two stacked axes sharing time: edges' connections/s (top), accept queue % of backlog (bottom);
    one dashed vertical line per finding mark, labelled with its code. Writes ``path``.

    Raises:
        BackendUnavailable: matplotlib is missing.
        UsageError: the suffix is not .png or .svg.
    """
    if path.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"plot file must end in .png or .svg, not {path.name!r}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BackendUnavailable("matplotlib is missing: pip install 'loopscope[plot]'") from exc

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    try:
        xs = [t + timeline.bucket_s / 2 for t in timeline.starts_s]
        others = iter(_OTHER_COLORS * 4)
        for e in timeline.edges:
            color = SELF_CALL_COLOR if e.self_call else next(others)
            top.plot(
                xs,
                e.rates_per_s,
                color=color,
                linewidth=2.4 if e.self_call else 1.4,
                label=("SELF " if e.self_call else "") + e.label,
            )
        top.set_ylabel(f"connections/s ({timeline.bucket_s:g} s buckets)")
        top.set_title(title)
        if timeline.edges:
            top.legend(fontsize=8, loc="upper left")
        else:
            top.text(
                0.5, 0.5, "no connections to local listeners", ha="center", transform=top.transAxes
            )
        for q in timeline.listeners:
            bottom.step(
                q.times_s, q.fill_pct, where="post", label=f"{q.listener} (backlog {q.backlog})"
            )
        bottom.set_ylabel("accept queue, % of backlog")
        bottom.set_xlabel("seconds from window start")
        bottom.set_ylim(0, 105)
        if timeline.listeners:
            bottom.legend(fontsize=8, loc="upper left")
        at: dict[float, list[str]] = {}
        for m in timeline.marks:  # findings dated at the same time share one line
            at.setdefault(m.at_s, []).append(m.code)
        for t, codes in at.items():
            for ax in (top, bottom):
                ax.axvline(t, color="#b7791f", linestyle="--", linewidth=1)
            top.annotate(
                ", ".join(dict.fromkeys(codes)),
                xy=(t, 0.98),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                color="#b7791f",
            )
        bottom.set_xlim(0, max(timeline.window_s, timeline.bucket_s))
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_watch_plot(
    path: str | Path, data: WatchData, report: WatchReport, findings: Sequence[Finding]
) -> Path:
    """``watch --plot FILE``: :func:`build_timeline` of the window drawn by :func:`plot_timeline`.

    Raises:
        BackendUnavailable: matplotlib is missing.
        UsageError: the suffix is not .png or .svg.
    """
    timeline = build_timeline(data, report, findings)
    title = f"loopscope watch ({report.netns_label}, {report.window_s:.0f} s)"
    return plot_timeline(timeline, Path(path), title=title)

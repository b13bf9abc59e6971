"""Plots of throughput and p99 latency against offered load (matplotlib, Agg backend, PNG or SVG).

Needs the ``plot`` extra: ``pip install 'loopscope[plot]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loopscope.errors import BackendUnavailable, UsageError

__all__ = ["Series", "plot_curves"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One curve: a design, measured or simulated."""

    label: str
    """Legend text."""
    offered_per_s: tuple[float, ...]
    """X values: offered rates, requests per second."""
    goodput_per_s: tuple[float, ...]
    """Successful responses per second at each rate."""
    p99_s: tuple[float | None, ...]
    """p99 latency at each rate over all requests (failures at the client timeout), seconds."""
    style: int = 0
    """Line style index: 0 solid, 1 dashed, 2 dotted, 3 dash-dot (e.g. measured vs simulated, or M)."""
    knee_per_s: float | None = None
    """Where to draw the knee marker, requests per second."""
    color_key: str = ""
    """Series with the same key share a colour (measured and simulated of one design)."""


_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "x", "s", "^")


def plot_curves(series: Sequence[Series], path: Path, *, title: str, log_x: bool = False) -> Path:
    """Draw goodput (left) and p99 latency (right, log scale) against offered rate; write ``path``.

    The format follows the suffix (``.png`` or ``.svg``).

    Raises:
        BackendUnavailable: matplotlib is missing.
        UsageError: unsupported suffix or no series.
    """
    if path.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"plot file must end in .png or .svg, not {path.name!r}")
    if not series:
        raise UsageError("nothing to plot")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BackendUnavailable("matplotlib is missing: pip install 'loopscope[plot]'") from exc
    colours: dict[str, str] = {}
    palette = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    fig, (ax_tp, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.4))
    for s in series:
        key = s.color_key or s.label
        colour = colours.setdefault(key, palette[len(colours) % len(palette)])
        style = _STYLES[s.style % len(_STYLES)]
        marker = _MARKERS[s.style % len(_MARKERS)]
        goodput = [g if g > 0 or not log_x else float("nan") for g in s.goodput_per_s]
        ax_tp.plot(s.offered_per_s, goodput, style, marker=marker, color=colour, label=s.label)
        xs = [x for x, y in zip(s.offered_per_s, s.p99_s, strict=False) if y is not None]
        ys = [1000.0 * y for y in s.p99_s if y is not None]
        ax_lat.plot(xs, ys, style, marker=marker, color=colour, label=s.label)
        if s.knee_per_s is not None:
            for ax in (ax_tp, ax_lat):
                ax.axvline(s.knee_per_s, color=colour, linestyle=style, linewidth=0.8, alpha=0.5)
    top = max(max(s.offered_per_s) for s in series)
    low = min(min(s.offered_per_s) for s in series)
    ax_tp.plot([low, top], [low, top], color="grey", linewidth=0.8, alpha=0.5, label="offered")
    if log_x:
        for ax in (ax_tp, ax_lat):
            ax.set_xscale("log")
        ax_tp.set_yscale("log")
    ax_tp.set_xlabel("offered rate (requests/s)")
    ax_tp.set_ylabel("goodput (successful responses/s)")
    ax_tp.set_title("throughput")
    ax_lat.set_xlabel("offered rate (requests/s)")
    ax_lat.set_ylabel("p99 latency, failures at the timeout (ms)")
    ax_lat.set_yscale("log")
    ax_lat.set_title("p99 latency")
    for ax in (ax_tp, ax_lat):
        ax.grid(True, alpha=0.3)
    ax_tp.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

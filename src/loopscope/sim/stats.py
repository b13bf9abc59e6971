"""Statistics over latency samples and rate sweeps (pure).

Percentiles use the nearest-rank method on sorted samples (what HdrHistogram and wrk2 report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LatencySummary",
    "SweepPoint",
    "find_knee",
    "percentile",
    "percentile_with_failures",
    "summarize_latencies",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    """Latency percentiles of one run, seconds; all None when there were no samples."""

    count: int
    """Number of samples."""
    mean_s: float | None
    """Arithmetic mean."""
    p50_s: float | None
    """Median."""
    p90_s: float | None
    """90th percentile."""
    p99_s: float | None
    """99th percentile."""
    p999_s: float | None
    """99.9th percentile."""
    max_s: float | None
    """Largest sample."""


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ascending ``sorted_values``: the smallest value with at least
    ``pct`` percent of samples at or below it.

    Example: ``percentile([1, 2, 3, 4], 50) == 2``; ``percentile([1, 2, 3, 4], 99) == 4``.

    Raises:
        ValueError: empty input or pct outside 0..100.
    """
    if not sorted_values:
        raise ValueError("no samples")
    if not 0.0 <= pct <= 100.0:
        raise ValueError("pct must be in 0..100")
    rank = max(1, math.ceil(round(pct / 100.0 * len(sorted_values), 9)))  # 99.9% of 1000 is 999
    return float(sorted_values[rank - 1])


def summarize_latencies(values_s: Sequence[float]) -> LatencySummary:
    """Summarize latency samples (any order), seconds in, seconds out."""
    if not values_s:
        return LatencySummary(
            count=0, mean_s=None, p50_s=None, p90_s=None, p99_s=None, p999_s=None, max_s=None
        )
    ordered = sorted(values_s)
    return LatencySummary(
        count=len(ordered),
        mean_s=math.fsum(ordered) / len(ordered),
        p50_s=percentile(ordered, 50),
        p90_s=percentile(ordered, 90),
        p99_s=percentile(ordered, 99),
        p999_s=percentile(ordered, 99.9),
        max_s=ordered[-1],
    )


def percentile_with_failures(
    values_s: Sequence[float], failures: int, pct: float, ceiling_s: float | None
) -> float | None:
    """Percentile over successes and failures together, a failure counting as ``ceiling_s`` (the client
    timeout: what the user waited). Hides nothing when a system collapses, unlike a percentile of
    successes only.

    Example: ``percentile_with_failures([0.1] * 98, 2, 99, 2.0) == 2.0``.

    Returns:
        Seconds, or None when the percentile falls on a failure and there is no ceiling, or no samples.
    """
    if not values_s and failures == 0:
        return None
    inf = float("inf")
    ordered = sorted(values_s) + [ceiling_s if ceiling_s is not None else inf] * failures
    ordered.sort()
    value = percentile(ordered, pct)
    return None if value == inf else value


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    """One rate of a sweep."""

    offered_per_s: float
    """Offered external rate, requests per second."""
    goodput_per_s: float
    """Successful responses per second."""
    p99_s: float | None
    """99th percentile latency of successful responses, seconds."""


def find_knee(
    points: Sequence[SweepPoint], *, goodput_ratio: float = 0.9, p99_factor: float = 5.0
) -> float | None:
    """The knee of a sweep: the lowest offered rate where goodput falls below ``goodput_ratio`` of the
    offered rate, or p99 exceeds ``p99_factor`` times the p99 at the lowest rate.

    Example: offered 10/20/40 with goodput 10/19.9/12 -> knee 40.

    Returns:
        The offered rate of the knee, requests per second, or None if the sweep never bends.
    """
    ordered = sorted(points, key=lambda p: p.offered_per_s)
    base_p99 = next((p.p99_s for p in ordered if p.p99_s is not None), None)
    for point in ordered:
        if point.goodput_per_s < goodput_ratio * point.offered_per_s:
            return point.offered_per_s
        if base_p99 is not None and point.p99_s is not None and point.p99_s > p99_factor * base_p99:
            return point.offered_per_s
    return None

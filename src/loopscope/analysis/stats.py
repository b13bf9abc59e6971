"""Latency statistics, the one module for every feature (pure, no I/O): :class:`LatencySummary`,
exact nearest-rank percentiles over samples (:func:`summarize_latencies`, what HdrHistogram and wrk2
report) and an HDR-style log-bucketed histogram (:class:`LogHistogram`) for millions of nanosecond
samples.

One record, stored in seconds: a simulated or measured latency in seconds is kept bit for bit, and a
histogram's integer nanoseconds come back exactly through the ``*_ns`` properties (``round(s * 1e9)`` is
exact below 2**53 ns / 1e9, about 104 days). :func:`latency_json_s` and :func:`latency_json_ns` give the
two JSON shapes the commands print (``simulate``/``lab`` in seconds, ``bench`` in nanoseconds).

The histogram follows HdrHistogram's layout: values below ``2**sub_bucket_bits`` get one bucket each
(exact); above that, every power of two is split into ``2**(sub_bucket_bits - 1)`` equal sub-buckets, so
the width of a bucket is at most ``1 / 2**(sub_bucket_bits - 1)`` of its value (0.78 % with the default
8 bits) whatever the magnitude: 100 ns and 40 ms are both resolved to better than 1 %. Percentiles
return the highest value equivalent to the bucket holding the requested rank (HdrHistogram's
``getValueAtPercentile``), clamped to the recorded min/max, so a histogram of exact small values
returns those values exactly.

Example:
    >>> h = LogHistogram.of(range(1, 101))
    >>> h.value_at_percentile(50.0), h.value_at_percentile(99.0), h.max_ns
    (50, 99, 100)
    >>> summarize_latencies([0.3, 0.1, 0.2]).p50_s
    0.2
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SUB_BUCKET_BITS",
    "LatencySummary",
    "LogHistogram",
    "latency_json_ns",
    "latency_json_s",
    "median",
    "percentile",
    "percentile_with_failures",
    "summarize_latencies",
    "throughput_bytes_per_s",
]

DEFAULT_SUB_BUCKET_BITS = 8
"""256 exact buckets, then 128 sub-buckets per power of two: relative error < 0.79 %."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    """Percentiles of a non-empty set of latencies, seconds (``*_ns`` properties: nanoseconds)."""

    count: int
    """Number of samples (at least 1)."""
    min_s: float
    """Smallest sample (exact)."""
    max_s: float
    """Largest sample (exact)."""
    mean_s: float
    """Arithmetic mean (exact)."""
    p50_s: float
    """Median (exact from samples; bucket resolution from a :class:`LogHistogram`)."""
    p90_s: float
    """90th percentile."""
    p99_s: float
    """99th percentile."""
    p999_s: float
    """99.9th percentile."""

    @property
    def min_ns(self) -> int:
        """Smallest sample, whole nanoseconds."""
        return round(self.min_s * 1e9)

    @property
    def max_ns(self) -> int:
        """Largest sample, whole nanoseconds."""
        return round(self.max_s * 1e9)

    @property
    def mean_ns(self) -> float:
        """Mean, nanoseconds; exact for a mean of whole nanoseconds (a histogram's ``sum / count``:
        the sum is recovered as an integer, so the float noise of seconds -> ns does not show)."""
        approx = self.mean_s * 1e9
        exact = round(approx * self.count) / self.count
        return exact if exact / 1e9 == self.mean_s else approx

    @property
    def p50_ns(self) -> int:
        """Median, whole nanoseconds."""
        return round(self.p50_s * 1e9)

    @property
    def p90_ns(self) -> int:
        """90th percentile, whole nanoseconds."""
        return round(self.p90_s * 1e9)

    @property
    def p99_ns(self) -> int:
        """99th percentile, whole nanoseconds."""
        return round(self.p99_s * 1e9)

    @property
    def p999_ns(self) -> int:
        """99.9th percentile, whole nanoseconds."""
        return round(self.p999_s * 1e9)


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
    """Summarize latency samples (any order), seconds in, seconds out, exact nearest-rank percentiles.

    Example: ``summarize_latencies([0.3, 0.1, 0.2])`` -> count 3, p50_s 0.2, max_s 0.3, mean_s ~0.2.

    Raises:
        ValueError: no samples.
    """
    if not values_s:
        raise ValueError("no samples")
    ordered = sorted(values_s)
    return LatencySummary(
        count=len(ordered),
        min_s=ordered[0],
        max_s=ordered[-1],
        mean_s=math.fsum(ordered) / len(ordered),
        p50_s=percentile(ordered, 50),
        p90_s=percentile(ordered, 90),
        p99_s=percentile(ordered, 99),
        p999_s=percentile(ordered, 99.9),
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


def latency_json_s(summary: LatencySummary | None) -> dict[str, Any]:
    """The seconds shape that ``simulate --json`` and ``lab --json`` print (no minimum; None when empty).

    Example: ``latency_json_s(None) == {"count": 0, "mean_s": None, ..., "max_s": None}``.
    """
    if summary is None:
        return {
            "count": 0,
            "mean_s": None,
            "p50_s": None,
            "p90_s": None,
            "p99_s": None,
            "p999_s": None,
            "max_s": None,
        }
    return {
        "count": summary.count,
        "mean_s": summary.mean_s,
        "p50_s": summary.p50_s,
        "p90_s": summary.p90_s,
        "p99_s": summary.p99_s,
        "p999_s": summary.p999_s,
        "max_s": summary.max_s,
    }


def latency_json_ns(summary: LatencySummary | None) -> dict[str, Any] | None:
    """The nanoseconds shape that ``bench --json`` prints (integers but the mean); None stays None."""
    if summary is None:
        return None
    return {
        "count": summary.count,
        "min_ns": summary.min_ns,
        "max_ns": summary.max_ns,
        "mean_ns": summary.mean_ns,
        "p50_ns": summary.p50_ns,
        "p90_ns": summary.p90_ns,
        "p99_ns": summary.p99_ns,
        "p999_ns": summary.p999_ns,
    }


class LogHistogram:
    """Counts of non-negative integer values (nanoseconds) in log-linear buckets.

    Args:
        sub_bucket_bits: precision; ``2**sub_bucket_bits`` exact buckets at the bottom, then
            ``2**(sub_bucket_bits-1)`` buckets per power of two. 1 to 20.

    Raises:
        ValueError: ``sub_bucket_bits`` out of range, or a negative value recorded.
    """

    __slots__ = ("_bits", "_counts", "_half", "_max", "_min", "_sum", "_total")

    def __init__(self, sub_bucket_bits: int = DEFAULT_SUB_BUCKET_BITS) -> None:
        if not 1 <= sub_bucket_bits <= 20:
            raise ValueError(f"sub_bucket_bits must be 1..20, got {sub_bucket_bits}")
        self._bits = sub_bucket_bits
        self._half = 1 << (sub_bucket_bits - 1)
        self._counts: dict[int, int] = {}
        self._total = 0
        self._sum = 0
        self._min: int | None = None
        self._max: int | None = None

    @classmethod
    def of(
        cls, values_ns: Iterable[int], sub_bucket_bits: int = DEFAULT_SUB_BUCKET_BITS
    ) -> LogHistogram:
        """A histogram holding each of ``values_ns`` once.

        Example: ``LogHistogram.of([1, 2, 3]).summarize().p50_ns == 2``.
        """
        h = cls(sub_bucket_bits)
        h.record_all(values_ns)
        return h

    # -- bucket arithmetic -------------------------------------------------------------------------
    def bucket_index(self, value_ns: int) -> int:
        """Bucket of ``value_ns``.

        Example (8 bits): 255 -> 255; 256 -> 256; 257 -> 256 (shares 256's bucket); 512 -> 384.
        """
        shift = value_ns.bit_length() - self._bits
        if shift <= 0:
            return value_ns
        return shift * self._half + (value_ns >> shift)

    def bucket_bounds(self, index: int) -> tuple[int, int]:
        """Lowest and highest value (inclusive) that fall into bucket ``index``.

        Example (8 bits): 256 -> (256, 257); 384 -> (512, 515).
        """
        if index < 2 * self._half:
            return index, index
        shift = index // self._half - 1
        sub = index - shift * self._half
        low = sub << shift
        return low, low + (1 << shift) - 1

    # -- recording ---------------------------------------------------------------------------------
    def record(self, value_ns: int, count: int = 1) -> None:
        """Add ``count`` occurrences of ``value_ns``.

        Raises:
            ValueError: negative value or count.
        """
        if value_ns < 0 or count < 0:
            raise ValueError(f"cannot record value {value_ns} x{count}")
        if count == 0:
            return
        idx = self.bucket_index(value_ns)
        self._counts[idx] = self._counts.get(idx, 0) + count
        self._total += count
        self._sum += value_ns * count
        if self._min is None or value_ns < self._min:
            self._min = value_ns
        if self._max is None or value_ns > self._max:
            self._max = value_ns

    def record_all(self, values_ns: Iterable[int]) -> None:
        """Record each value once."""
        for v in values_ns:
            self.record(v)

    def merge(self, other: LogHistogram) -> None:
        """Add every count of ``other`` (same ``sub_bucket_bits``) into this histogram.

        Raises:
            ValueError: different precision.
        """
        if other._bits != self._bits:
            raise ValueError("cannot merge histograms of different precision")
        for idx, n in other._counts.items():
            self._counts[idx] = self._counts.get(idx, 0) + n
        self._total += other._total
        self._sum += other._sum
        for v in (other._min, other._max):
            if v is not None:
                self._min = v if self._min is None else min(self._min, v)
                self._max = v if self._max is None else max(self._max, v)

    # -- queries -----------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Number of recorded values."""
        return self._total

    @property
    def min_ns(self) -> int | None:
        """Smallest recorded value, None when empty."""
        return self._min

    @property
    def max_ns(self) -> int | None:
        """Largest recorded value, None when empty."""
        return self._max

    @property
    def mean_ns(self) -> float | None:
        """Exact mean, None when empty."""
        return self._sum / self._total if self._total else None

    def value_at_percentile(self, pct: float) -> int:
        """Value at or below which ``pct`` percent of the recorded values lie.

        The rank is ``ceil(pct/100 * count)`` (at least 1); the answer is the highest value of the
        bucket holding that rank, clamped to [min, max].

        Raises:
            ValueError: empty histogram or ``pct`` outside [0, 100].
        """
        if not 0.0 <= pct <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {pct}")
        if self._total == 0 or self._min is None or self._max is None:
            raise ValueError("empty histogram")
        rank = max(1, math.ceil(pct / 100.0 * self._total - 1e-9))
        seen = 0
        for idx in sorted(self._counts):
            seen += self._counts[idx]
            if seen >= rank:
                high = self.bucket_bounds(idx)[1]
                return max(self._min, min(high, self._max))
        return self._max

    def summarize(self) -> LatencySummary:
        """p50/p90/p99/p99.9, min, max and mean at bucket resolution (the ``*_ns`` properties give back
        the exact integer nanoseconds).

        Raises:
            ValueError: empty histogram.
        """
        if self._total == 0 or self._min is None or self._max is None:
            raise ValueError("empty histogram")
        return LatencySummary(
            count=self._total,
            min_s=self._min / 1e9,
            max_s=self._max / 1e9,
            mean_s=self._sum / self._total / 1e9,
            p50_s=self.value_at_percentile(50.0) / 1e9,
            p90_s=self.value_at_percentile(90.0) / 1e9,
            p99_s=self.value_at_percentile(99.0) / 1e9,
            p999_s=self.value_at_percentile(99.9) / 1e9,
        )


def throughput_bytes_per_s(total_bytes: int, elapsed_ns: int) -> float:
    """Bytes per second of a transfer of ``total_bytes`` taking ``elapsed_ns``.

    Example: ``throughput_bytes_per_s(1_000_000, 1_000_000) == 1e9``.

    Raises:
        ValueError: non-positive elapsed time or negative byte count.
    """
    if elapsed_ns <= 0 or total_bytes < 0:
        raise ValueError(f"bad transfer: {total_bytes} bytes in {elapsed_ns} ns")
    return total_bytes * 1e9 / elapsed_ns


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (mean of the two middle values for even lengths).

    Raises:
        ValueError: empty sequence.
    """
    if not values:
        raise ValueError("median of nothing")
    s = sorted(values)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0

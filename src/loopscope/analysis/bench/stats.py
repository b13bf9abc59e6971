"""Latency statistics for path benchmarks: an HDR-style log-bucketed histogram (pure, no I/O).

The histogram follows HdrHistogram's layout: values below ``2**sub_bucket_bits`` get one bucket each
(exact); above that, every power of two is split into ``2**(sub_bucket_bits - 1)`` equal sub-buckets, so
the width of a bucket is at most ``1 / 2**(sub_bucket_bits - 1)`` of its value (0.78 % with the default
8 bits) whatever the magnitude: 100 ns and 40 ms are both resolved to better than 1 %. Percentiles
return the highest value equivalent to the bucket holding the requested rank (HdrHistogram's
``getValueAtPercentile``), clamped to the recorded min/max, so a histogram of exact small values
returns those values exactly.

Example:
    >>> h = LogHistogram()
    >>> for v in range(1, 101):
    ...     h.record(v)
    >>> h.value_at_percentile(50.0), h.value_at_percentile(99.0), h.max_ns
    (50, 99, 100)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SUB_BUCKET_BITS",
    "LatencySummary",
    "LogHistogram",
    "median",
    "summarize_latencies",
    "throughput_bytes_per_s",
]

DEFAULT_SUB_BUCKET_BITS = 8
"""256 exact buckets, then 128 sub-buckets per power of two: relative error < 0.79 %."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    """Percentiles of a set of latencies, all in nanoseconds."""

    count: int
    """Number of recorded values."""
    min_ns: int
    """Smallest recorded value (exact)."""
    max_ns: int
    """Largest recorded value (exact)."""
    mean_ns: float
    """Arithmetic mean of the recorded values (exact)."""
    p50_ns: int
    """Median (bucket resolution)."""
    p90_ns: int
    """90th percentile (bucket resolution)."""
    p99_ns: int
    """99th percentile (bucket resolution)."""
    p999_ns: int
    """99.9th percentile (bucket resolution)."""


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
        """p50/p90/p99/p99.9, min, max and mean.

        Raises:
            ValueError: empty histogram.
        """
        if self._total == 0 or self._min is None or self._max is None:
            raise ValueError("empty histogram")
        return LatencySummary(
            count=self._total,
            min_ns=self._min,
            max_ns=self._max,
            mean_ns=self._sum / self._total,
            p50_ns=self.value_at_percentile(50.0),
            p90_ns=self.value_at_percentile(90.0),
            p99_ns=self.value_at_percentile(99.0),
            p999_ns=self.value_at_percentile(99.9),
        )


def summarize_latencies(
    values_ns: Iterable[int], *, sub_bucket_bits: int = DEFAULT_SUB_BUCKET_BITS
) -> LatencySummary:
    """Summary of latencies in nanoseconds through a :class:`LogHistogram`.

    Raises:
        ValueError: no values.
    """
    h = LogHistogram(sub_bucket_bits)
    h.record_all(values_ns)
    return h.summarize()


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

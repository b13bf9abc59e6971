"""Small numeric helpers for trace analysis (pure): interval union and percentiles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["clipped_union_ns", "percentile"]


def clipped_union_ns(intervals: Iterable[tuple[int, int]], lo_ns: int, hi_ns: int) -> int:
    """Total length of the union of ``intervals`` clipped to ``[lo_ns, hi_ns]``, in nanoseconds.

    Overlapping intervals count once (a parallel fan-out of three 10 ms calls waits 10 ms, not 30).

    Example: ``clipped_union_ns([(0, 10), (5, 20), (30, 40)], 0, 35) == 25``.
    """
    clipped = sorted(
        (max(a, lo_ns), min(b, hi_ns)) for a, b in intervals if min(b, hi_ns) > max(a, lo_ns)
    )
    total = 0
    cur_a: int | None = None
    cur_b = 0
    for a, b in clipped:
        if cur_a is None or a > cur_b:
            if cur_a is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        elif b > cur_b:
            cur_b = b
    if cur_a is not None:
        total += cur_b - cur_a
    return total


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100) of already sorted values; None when empty.

    Example: ``percentile([1, 2, 3, 4], 50) == 2``; ``percentile([1, 2, 3, 4], 99) == 4``.
    """
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]

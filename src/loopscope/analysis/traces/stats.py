"""Interval arithmetic for trace analysis (pure); percentiles come from :mod:`loopscope.analysis.stats`."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["clipped_union_ns"]


def clipped_union_ns(intervals: Iterable[tuple[int, int]], lo_ns: int, hi_ns: int) -> int:
    """Total length of the union of ``intervals`` clipped to ``[lo_ns, hi_ns]``, in nanoseconds.

    Overlapping intervals count once (a parallel fan-out of three 10 ms calls waits 10 ms, not 30).

    Example: ``clipped_union_ns([(0, 10), (5, 20), (30, 40)], 0, 35) == 25``.
    """
    clipped: list[tuple[int, int]] = []
    for a, b in intervals:
        if a < lo_ns:
            a = lo_ns
        if b > hi_ns:
            b = hi_ns
        if b > a:
            clipped.append((a, b))
    clipped.sort()
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

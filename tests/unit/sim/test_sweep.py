"""Percentiles, summaries and knees (pure)."""

import pytest

from loopscope.sim.stats import (
    SweepPoint,
    find_knee,
    percentile,
    percentile_with_failures,
    summarize_latencies,
)


def test_percentile_nearest_rank():
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 99) == 4
    assert percentile([1, 2, 3, 4], 0) == 1
    values = list(range(1, 1001))
    assert percentile(values, 99.9) == 999
    assert percentile(values, 99) == 990


def test_percentile_errors():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize():
    s = summarize_latencies([0.3, 0.1, 0.2])
    assert (s.count, s.p50_s, s.max_s) == (3, 0.2, 0.3)
    assert s.mean_s == pytest.approx(0.2)
    empty = summarize_latencies([])
    assert empty.count == 0 and empty.p99_s is None


def test_percentile_with_failures():
    assert percentile_with_failures([0.1] * 98, 2, 99, 2.0) == 2.0
    assert percentile_with_failures([0.1] * 99, 1, 99, 2.0) == 0.1
    assert percentile_with_failures([0.1] * 50, 50, 99, None) is None
    assert percentile_with_failures([], 0, 99, 1.0) is None


def test_find_knee():
    pts = [
        SweepPoint(offered_per_s=r, goodput_per_s=g, p99_s=0.05)
        for r, g in ((10, 10), (20, 19.9), (40, 12))
    ]
    assert find_knee(pts) == 40
    latency = [
        SweepPoint(offered_per_s=r, goodput_per_s=r, p99_s=p)
        for r, p in ((10, 0.05), (20, 0.3), (30, 2))
    ]
    assert find_knee(latency) == 20
    flat = [SweepPoint(offered_per_s=r, goodput_per_s=r, p99_s=0.05) for r in (10, 20)]
    assert find_knee(flat) is None

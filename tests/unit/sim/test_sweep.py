"""Knees of rate sweeps (pure)."""

from loopscope.sim.sweep import SweepPoint, find_knee


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

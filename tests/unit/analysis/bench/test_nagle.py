"""find_nagle_stall on synthetic latency series with known shapes."""

import random

from loopscope.analysis.bench.nagle import NAGLE_CODE, find_nagle_stall
from loopscope.model import Severity

MS = 1_000_000


def _stalled(n_stall=40, n_fast=3, seed=1):
    rnd = random.Random(seed)
    return [int((40 + rnd.uniform(0.2, 4.5)) * MS) for _ in range(n_stall)] + [
        int(rnd.uniform(0.08, 0.3) * MS) for _ in range(n_fast)
    ]


def test_classic_stall_is_flagged_with_evidence():
    f = find_nagle_stall(_stalled(), subject="GET http://127.0.0.1:1234/")
    assert f is not None
    assert f.code == NAGLE_CODE == "NAGLE_DELAYED_ACK_STALL"
    assert f.severity is Severity.LOW
    assert "40 of 43" in f.evidence and "TCP_NODELAY" in f.remedy
    assert f.subject == "GET http://127.0.0.1:1234/"


def test_split_sends_raise_severity_and_single_sends_lower_it():
    assert find_nagle_stall(_stalled(), split_sends=True).severity is Severity.MEDIUM
    f = find_nagle_stall(_stalled(), split_sends=False)
    assert f.severity is Severity.INFO and "one send" in f.evidence


def test_fast_requests_are_not_flagged():
    assert find_nagle_stall([120_000 + i for i in range(500)]) is None
    assert find_nagle_stall([]) is None


def test_few_stalls_among_many_fast_are_not_flagged():
    # 2 requests at 41 ms among 100: below both the count and the fraction thresholds
    assert find_nagle_stall([41 * MS] * 2 + [100_000] * 98) is None
    # 10 of 100: enough count but below 20 %
    assert find_nagle_stall([41 * MS] * 10 + [100_000] * 90) is None
    # 25 of 100: flagged
    assert find_nagle_stall([41 * MS] * 25 + [100_000] * 75) is not None


def test_uniformly_slow_server_is_not_flagged():
    rnd = random.Random(7)
    values = [int(rnd.uniform(10, 60) * MS) for _ in range(200)]
    assert find_nagle_stall(values) is None


def test_wide_spread_in_window_is_not_flagged():
    # spread across the whole 36-60 ms window: a slow handler, not a timer
    values = [int((36 + 24 * i / 99) * MS) for i in range(100)]
    assert find_nagle_stall(values) is None


def test_200ms_delack_is_outside_the_window():
    assert find_nagle_stall([200 * MS] * 50) is None

"""Golden and property tests of the HDR-style histogram (loopscope.analysis.bench.stats)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopscope.analysis.bench.stats import (
    LogHistogram,
    median,
    summarize_latencies,
    throughput_bytes_per_s,
)


def test_one_to_hundred_exact():
    s = summarize_latencies(range(1, 101))
    assert (s.count, s.min_ns, s.max_ns) == (100, 1, 100)
    assert s.mean_ns == 50.5
    assert (s.p50_ns, s.p90_ns, s.p99_ns, s.p999_ns) == (50, 90, 99, 100)


def test_bucket_golden_values_8_bits():
    h = LogHistogram(8)
    assert [h.bucket_index(v) for v in (0, 255, 256, 257, 258, 511, 512, 515, 516)] == [
        0,
        255,
        256,
        256,
        257,
        383,
        384,
        384,
        385,
    ]
    assert h.bucket_bounds(255) == (255, 255)
    assert h.bucket_bounds(256) == (256, 257)
    assert h.bucket_bounds(383) == (510, 511)
    assert h.bucket_bounds(384) == (512, 515)


def test_bucket_bounds_contain_value_and_tile_the_line():
    h = LogHistogram(4)
    prev_high = -1
    for idx in range(0, 200):
        low, high = h.bucket_bounds(idx)
        assert low == prev_high + 1
        assert h.bucket_index(low) == idx and h.bucket_index(high) == idx
        prev_high = high


def test_known_latency_mix_percentiles():
    # 900 requests at 20 us, 90 at 100 us, 10 at 40 ms: p50 20 us, p90 20 us, p99 100 us, p99.9 40 ms
    values = [20_000] * 900 + [100_000] * 90 + [40_000_000] * 10
    s = summarize_latencies(values)
    assert abs(s.p50_ns - 20_000) / 20_000 < 0.008
    assert abs(s.p90_ns - 20_000) / 20_000 < 0.008
    assert abs(s.p99_ns - 100_000) / 100_000 < 0.008
    assert s.p999_ns == 40_000_000  # clamped to the recorded max
    assert s.min_ns == 20_000 and s.max_ns == 40_000_000


def test_percentile_is_highest_equivalent_value():
    h = LogHistogram(8)
    h.record(1000)  # bucket [1000, 1003]
    h.record(5000)
    assert h.value_at_percentile(50.0) == 1003
    assert h.value_at_percentile(100.0) == 5000
    assert h.value_at_percentile(0.0) == 1003


def test_merge_equals_recording_everything():
    a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
    for v in range(0, 5000, 7):
        (a if v % 2 else b).record(v)
        both.record(v)
    a.merge(b)
    assert a.summarize() == both.summarize()


def test_errors():
    with pytest.raises(ValueError):
        LogHistogram().summarize()
    with pytest.raises(ValueError):
        LogHistogram().record(-1)
    with pytest.raises(ValueError):
        LogHistogram(0)
    h = LogHistogram()
    h.record(1)
    with pytest.raises(ValueError):
        h.value_at_percentile(100.5)
    with pytest.raises(ValueError):
        h.merge(LogHistogram(5))


def test_throughput_and_median():
    assert throughput_bytes_per_s(1_000_000, 1_000_000) == 1e9
    with pytest.raises(ValueError):
        throughput_bytes_per_s(10, 0)
    assert median([3, 1, 2]) == 2.0
    assert median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        median([])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=300),
    st.sampled_from([50.0, 90.0, 99.0, 99.9]),
)
def test_percentile_within_bucket_error_of_exact_rank(values, pct):
    h = LogHistogram(8)
    h.record_all(values)
    exact = sorted(values)[max(1, math.ceil(pct / 100 * len(values) - 1e-9)) - 1]
    got = h.value_at_percentile(pct)
    assert got >= exact
    assert got - exact <= exact / 128 + 1

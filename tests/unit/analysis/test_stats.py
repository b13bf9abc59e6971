"""Latency statistics (loopscope.analysis.stats): exact nearest-rank percentiles over samples, the
HDR-style histogram (golden and property tests), the one summary record and its JSON shapes."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopscope.analysis.stats import (
    LogHistogram,
    latency_json_ns,
    latency_json_s,
    median,
    percentile,
    percentile_with_failures,
    summarize_latencies,
    throughput_bytes_per_s,
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
    assert s.min_s == 0.1 and s.p99_s == 0.3
    with pytest.raises(ValueError):
        summarize_latencies([])


def test_samples_in_seconds_are_kept_bit_for_bit():
    values = [0.1 + i * 1e-7 / 3 for i in range(1000)]
    s = summarize_latencies(values)
    assert (s.p50_s, s.p99_s, s.max_s) == (values[499], values[989], values[999])


def test_histogram_nanoseconds_come_back_exactly():
    values = [1, 999_999_937, 123_456_789_012, 20_000, 7]
    s = LogHistogram.of(values, 20).summarize()
    assert (s.min_ns, s.max_ns) == (1, 123_456_789_012)
    assert isinstance(s.p50_ns, int) and s.p50_ns == 20_000
    # the mean of whole nanoseconds survives the trip through seconds: ~4% of these means would
    # come back 1 ulp off (e.g. 16038.835999999998 for 16038.836) without the integer-sum recovery
    for k in range(1, 2000):
        values = [1000 + (k * 7919 + i * 104_729) % 9_999_000 for i in range(1 + k % 37)]
        assert LogHistogram.of(values).summarize().mean_ns == sum(values) / len(values)


def test_json_shapes():
    s = summarize_latencies([0.002, 0.001])
    assert latency_json_s(s) == {
        "count": 2,
        "mean_s": 0.0015,
        "p50_s": 0.001,
        "p90_s": 0.002,
        "p99_s": 0.002,
        "p999_s": 0.002,
        "max_s": 0.002,
    }
    assert latency_json_s(None)["count"] == 0 and latency_json_s(None)["p99_s"] is None
    h = LogHistogram.of(range(1, 101)).summarize()
    assert latency_json_ns(h) == {
        "count": 100,
        "min_ns": 1,
        "max_ns": 100,
        "mean_ns": 50.5,
        "p50_ns": 50,
        "p90_ns": 90,
        "p99_ns": 99,
        "p999_ns": 100,
    }
    assert latency_json_ns(None) is None


def test_percentile_with_failures():
    assert percentile_with_failures([0.1] * 98, 2, 99, 2.0) == 2.0
    assert percentile_with_failures([0.1] * 99, 1, 99, 2.0) == 0.1
    assert percentile_with_failures([0.1] * 50, 50, 99, None) is None
    assert percentile_with_failures([], 0, 99, 1.0) is None


def test_one_to_hundred_exact():
    s = LogHistogram.of(range(1, 101)).summarize()
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
    s = LogHistogram.of(values).summarize()
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

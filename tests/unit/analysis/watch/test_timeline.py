"""Time series of a watch window: bucketing, per-edge and per-app rates, queue fill, finding marks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from loopscope.analysis.watch.findings import check_watch
from loopscope.analysis.watch.report import summarize_watch
from loopscope.analysis.watch.timeline import bucket_rates, build_timeline, pick_bucket_s

S = 1_000_000_000


def _builders() -> ModuleType:
    """The event builders of test_report.py (known ground truth per connection)."""
    spec = importlib.util.spec_from_file_location(
        "watch_report_builders", Path(__file__).with_name("test_report.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bucket_rates_counts_per_second_and_short_last_bucket() -> None:
    assert bucket_rates([int(0.1 * S), int(0.2 * S), int(1.5 * S)], 0, 2 * S, 1.0) == (2.0, 1.0)
    # 2.5 s window, 1 s buckets: the last bucket is 0.5 s long, one event in it is 2/s
    assert bucket_rates([int(2.2 * S)], 0, int(2.5 * S), 1.0) == (0.0, 0.0, 2.0)
    # outside the window: dropped; the end itself belongs to the last bucket
    assert bucket_rates([-1, 3 * S, 2 * S], 0, 2 * S, 1.0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        bucket_rates([], 0, S, 0.0)


def test_pick_bucket_s() -> None:
    assert pick_bucket_s(10.0) == 0.5
    assert pick_bucket_s(60.0) == 0.5
    assert pick_bucket_s(61.0) == 1.0
    assert pick_bucket_s(300.0) == 5.0
    assert pick_bucket_s(100_000.0) == 834


def test_self_call_series_add_up_to_the_report_and_findings_are_dated() -> None:
    b = _builders()
    conns, samples, procs = b.self_calling_app(n=3, externals=4)  # externals at 1, 2, 3, 4 s
    data = b.data(conns, samples, (b.EBPF, b.DESTROY), procs)
    report = summarize_watch(data)
    findings = check_watch(report)
    tl = build_timeline(data, report, findings, bucket_s=1.0)
    assert tl.window_s == 10.0 and tl.starts_s == tuple(float(k) for k in range(10))
    self_edge = next(e for e in tl.edges if e.self_call)
    ext_edge = next(e for e in tl.edges if not e.self_call)
    assert self_edge.label == "gunicorn[10,11] -> gunicorn[10,11]:8080"
    # 3 self-calls in each of seconds 1..4; 1 external
    assert self_edge.rates_per_s == (0, 3, 3, 3, 3, 0, 0, 0, 0, 0)
    assert ext_edge.rates_per_s == (0, 1, 1, 1, 1, 0, 0, 0, 0, 0)
    assert sum(self_edge.rates_per_s) * tl.bucket_s == 12 == report.edges[0].connections
    (app,) = tl.apps
    assert sum(app.self_per_s) == 12 and sum(app.external_per_s) == 4
    (queue,) = tl.listeners
    assert queue.port == 8080 and queue.times_s == (0.5, 9.5) and queue.fill_pct == (0.0, 0.0)
    marks = {m.code: m.at_s for m in tl.marks}
    assert marks["SELF_CALL"] == pytest.approx(1.01)  # the first self-call
    assert marks["SELF_CALL_ON_HOT_PATH"] == pytest.approx(1.01)


def test_saturated_queue_is_marked_at_the_first_full_sample() -> None:
    b = _builders()
    app = b.proc(10, "server")
    samples = (
        b.sample(1.0, b.listener(8080, app, queue=1, backlog=4)),
        b.sample(2.0, b.listener(8080, app, queue=4, backlog=4)),
        b.sample(3.0, b.listener(8080, app, queue=4, backlog=4)),
    )
    data = b.data([], samples, (b.EBPF, b.DESTROY), {})
    report = summarize_watch(data)
    findings = [f for f in check_watch(report) if f.code == "ACCEPT_QUEUE_SATURATED"]
    tl = build_timeline(data, report, findings)
    assert tl.listeners[0].fill_pct == (25.0, 100.0, 100.0)
    assert [(m.code, m.at_s) for m in tl.marks] == [("ACCEPT_QUEUE_SATURATED", 2.0)]
    assert tl.edges == ()

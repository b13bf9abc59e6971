"""The counts kept off the scrape path: inline refresh at the interval, the background thread that
survives a failing pass (counted, logged, the old counts kept), age and duration, stop."""

from __future__ import annotations

import threading
import time

import pytest

from loopscope.exporter.counting import CountedViews
from loopscope.exporter.metrics import NamespaceView
from loopscope.testing.factories import make_snapshot


def _view(n: int) -> dict[object, NamespaceView]:
    return {"ns": NamespaceView(snapshot=make_snapshot([]), netns_cookie=None, time_wait_other=n)}


class _Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_inline_refresh_comes_at_the_interval_and_ages() -> None:
    calls: list[int] = []

    def count() -> dict[object, NamespaceView]:
        calls.append(1)
        return _view(len(calls))

    clock = _Clock()
    counts = CountedViews(count, 30.0, clock_s=clock)
    assert counts.latest().age_s is None and counts.latest().views == {}
    counts.refresh_if_due()
    counts.refresh_if_due()
    assert len(calls) == 1
    clock.now_s += 12.5
    state = counts.latest()
    assert state.age_s == 12.5 and state.views["ns"].time_wait_other == 1
    assert state.duration_s is not None and state.duration_s >= 0
    clock.now_s += 20
    counts.refresh_if_due()
    assert len(calls) == 2 and counts.latest().age_s == 0.0


def test_interval_zero_counts_every_time_and_starts_no_thread() -> None:
    calls: list[int] = []

    def count() -> dict[object, NamespaceView]:
        calls.append(1)
        return _view(1)

    counts = CountedViews(count, 0.0)
    counts.start()
    assert not counts.running
    counts.refresh_if_due()
    counts.refresh_if_due()
    assert len(calls) == 2


def test_a_failing_pass_keeps_the_old_counts_and_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    third = threading.Event()

    def count() -> dict[object, NamespaceView]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        if len(calls) >= 3:
            third.set()
        return _view(len(calls))

    counts = CountedViews(count, 0.05)
    counts.start()
    try:
        assert counts.running and counts.latest().views["ns"].time_wait_other == 1
        assert third.wait(10)  # the pass after the failure ran: the thread lived on
        deadline = time.monotonic() + 10
        while counts.latest().last_failed and time.monotonic() < deadline:
            time.sleep(0.01)
        state = counts.latest()
        assert state.failures == 1 and not state.last_failed
        assert state.views["ns"].time_wait_other >= 3
    finally:
        counts.stop()
    assert not counts.running
    assert "boom" in caplog.text


def test_a_failure_is_reported_until_a_pass_succeeds() -> None:
    fail = [False]

    def count() -> dict[object, NamespaceView]:
        if fail[0]:
            raise OSError("namespace gone")
        return _view(7)

    clock = _Clock()
    counts = CountedViews(count, 1.0, clock_s=clock)
    assert counts.refresh()
    fail[0] = True
    clock.now_s += 5
    assert not counts.refresh()
    state = counts.latest()
    assert state.last_failed and state.failures == 1
    assert state.views["ns"].time_wait_other == 7 and state.age_s == 5.0  # old counts, their age

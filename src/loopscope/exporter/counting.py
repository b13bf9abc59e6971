"""Ephemeral-port and TIME_WAIT counts off the scrape path.

Counting walks the kernel's established table, which is host-wide (every namespace's sockets): 0.1-0.3 s
with 10k sockets, too slow for a scrape. :class:`CountedViews` keeps the last counted result; a
background thread (:meth:`CountedViews.start`) refreshes it every ``interval_s`` and a scrape only
reads it under a lock. Without the thread (``--textfile``, or an interval of 0) the caller counts
inline with :meth:`CountedViews.refresh_if_due`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from loopscope.exporter.metrics import NamespaceView

__all__ = ["CountedState", "CountedViews"]

log = logging.getLogger("loopscope.exporter")


@dataclass(frozen=True, slots=True, kw_only=True)
class CountedState:
    """The last counting pass, as a scrape sees it."""

    views: Mapping[object, NamespaceView] = field(default_factory=dict)
    """Counted views by namespace id (the snapshot's ``netns``); empty before the first pass."""
    age_s: float | None = None
    """Seconds since the last successful pass started; None before the first one."""
    duration_s: float | None = None
    """Wall time of the last pass (successful or not), seconds; None before the first one."""
    failures: int = 0
    """Passes that raised (logged; the previous counts are kept)."""
    last_failed: bool = False
    """The last pass raised: the counts are older than one interval (a gap)."""


class CountedViews:
    """The last counted views, refreshed inline or by a background thread.

    Args:
        count: one counting pass: the counted views by namespace id. Anything it raises is logged
            and counted in ``failures``; the previous views are kept.
        interval_s: seconds between passes (0: every :meth:`refresh_if_due`; no thread).
        clock_s: monotonic clock, seconds.
    """

    def __init__(
        self,
        count: Callable[[], Mapping[object, NamespaceView]],
        interval_s: float,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self.interval_s = interval_s
        self.clock_s = clock_s
        self.passes = 0
        """Passes made (successful or not)."""
        self._lock = threading.Lock()
        self._views: Mapping[object, NamespaceView] = {}
        self._counted_at_s: float | None = None
        self._attempted_at_s: float | None = None
        self._duration_s: float | None = None
        self._failures = 0
        self._last_failed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the background thread counts (a scrape then never counts)."""
        return self._thread is not None

    def refresh(self) -> bool:
        """One counting pass now; the result replaces the kept one. Returns whether it succeeded.

        Every exception is caught here (the thread must outlive a failing pass: a namespace that
        vanished mid-walk, a netlink error, a bug), logged with its traceback and counted.
        """
        started_s = self.clock_s()
        t0 = time.perf_counter()
        try:
            views = self._count()
        except Exception:
            with self._lock:
                self._attempted_at_s = started_s
                self._duration_s = time.perf_counter() - t0
                self._failures += 1
                self._last_failed = True
                self.passes += 1
            log.exception("counting ephemeral ports and TIME_WAIT failed (old counts kept)")
            return False
        with self._lock:
            self._views = views
            self._counted_at_s = self._attempted_at_s = started_s
            self._duration_s = time.perf_counter() - t0
            self._last_failed = False
            self.passes += 1
        return True

    def refresh_if_due(self) -> None:
        """Inline mode: a pass when none was tried for ``interval_s`` (always with 0)."""
        last = self._attempted_at_s
        if last is None or self.clock_s() - last >= self.interval_s:
            self.refresh()

    def latest(self) -> CountedState:
        """The kept result and its age (a lock held for a few attribute reads)."""
        with self._lock:
            age = None if self._counted_at_s is None else self.clock_s() - self._counted_at_s
            return CountedState(
                views=self._views,
                age_s=age,
                duration_s=self._duration_s,
                failures=self._failures,
                last_failed=self._last_failed,
            )

    def start(self) -> None:
        """Count once now (the first scrape then has counts), then every ``interval_s`` in a daemon
        thread until :meth:`stop`. Does nothing with an interval of 0 or when already running."""
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="loopscope-counts", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.refresh()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (waits for a pass in progress, at most ``timeout_s``). Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)

"""Doctor rung-1 verdicts for the exporter: the doctor's gathering and its pure ladder
(:func:`~loopscope.analysis.doctor.ladder.judge_rung1`), run at most every ``interval_s`` seconds in
the scrape that comes due, kept for the scrapes between.

A gathering pings 127.0.0.1 and ::1, runs TCP and UDP echoes on 127.0.0.1, ::1 and 127.0.0.2, reads
routes, sysctls, ``localhost`` resolution and the firewall rules, and takes a snapshot without owners
(no /proc fd scan): ~0.1-1 s, hence the slow interval (default 300 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from loopscope.analysis.doctor.ladder import judge_rung1
from loopscope.analysis.doctor.verdict import RungResult, build_rung
from loopscope.errors import LoopscopeError

__all__ = ["DoctorChecks", "NamespaceChecks"]

log = logging.getLogger("loopscope.exporter")


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceChecks:
    """Rung 1 of one namespace, judged."""

    netns: str
    """Namespace label (``host``, a /run/netns name, ``pid N``)."""
    rung: RungResult
    """The rung-1 checks with their verdicts."""


class DoctorChecks:
    """Rung-1 checks of the namespaces the exporter reads, refreshed every ``interval_s``.

    Args:
        interval_s: seconds between gatherings; 0 turns the checks off.
        all_netns: every namespace instead of this one.
        clock_s: monotonic clock, seconds.
    """

    def __init__(
        self,
        interval_s: float,
        *,
        all_netns: bool = False,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.all_netns = all_netns
        self.clock_s = clock_s
        self.runs = 0
        """Gatherings made."""
        self.failures = 0
        """Gatherings that raised (logged; the previous results are kept)."""
        self._results: list[NamespaceChecks] = []
        self._ran_at_s: float | None = None

    def results(self) -> list[NamespaceChecks]:
        """The latest results, gathering first when they are older than ``interval_s``."""
        if self.interval_s <= 0:
            return []
        now_s = self.clock_s()
        if self._ran_at_s is None or now_s - self._ran_at_s >= self.interval_s:
            self._ran_at_s = now_s
            self.runs += 1
            try:
                self._results = self._gather()
            except (LoopscopeError, OSError) as exc:
                self.failures += 1
                log.warning("doctor checks failed: %s", exc)
        return self._results

    def age_s(self) -> float | None:
        """Seconds since the last gathering, None before the first one."""
        return None if self._ran_at_s is None else self.clock_s() - self._ran_at_s

    def _gather(self) -> list[NamespaceChecks]:
        from loopscope.doctor.gather import DoctorOptions, gather, gather_all

        opts = DoctorOptions(max_rung=1, attribute=False, rounds=2, timeout_s=0.5)
        if self.all_netns:
            facts, _skipped = gather_all(opts)
        else:
            facts = gather([None], opts)
        return [
            NamespaceChecks(netns=f.netns_label, rung=build_rung(1, judge_rung1(f))) for f in facts
        ]

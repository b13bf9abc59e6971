"""What a simulation run produced: the raw :class:`Trace` of an engine and its :class:`SimResult` (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loopscope.analysis.stats import LatencySummary, percentile_with_failures, summarize_latencies
from loopscope.sim.scenario import Scenario

__all__ = ["SimResult", "Trace", "summarize_trace"]


@dataclass(slots=True, kw_only=True)
class Trace:
    """Raw counters filled by an engine during one run (mutable while the run goes on)."""

    engine: str
    """``fast`` or ``simpy``."""
    latencies_s: list[float] = field(default_factory=list)
    """Latency of every successful external request, seconds, in completion order."""
    offered: int = 0
    """External requests that arrived."""
    ok: int = 0
    """External requests answered with success within the client timeout."""
    timeouts: int = 0
    """External requests the client gave up on (answered too late, or never answered by the end)."""
    rejected: int = 0
    """External requests answered 503 because a queue was full or a queued request was too old."""
    errors: int = 0
    """External requests answered 5xx because an internal call failed or timed out."""
    unfinished: int = 0
    """External requests still open at the end with no client timeout (a deadlock without timeouts)."""
    call_timeouts: int = 0
    """Internal HTTP calls whose client timeout expired."""
    last_arrival_s: float = 0.0
    """Time of the last external arrival, seconds since the start."""
    end_s: float = 0.0
    """Simulated time when the run stopped, seconds."""
    busy_s: float = 0.0
    """Worker-seconds during which main-pool workers were held (computing or blocked)."""
    blocked_s: float = 0.0
    """Worker-seconds during which main-pool workers were held while blocked on internal calls."""
    queue_wait_s: float = 0.0
    """Sum of the time requests spent in main-pool queues, seconds (Little: / end_s = mean length)."""
    max_queue_len: int = 0
    """Longest main-pool queue seen."""
    started: int = 0
    """Requests (external and internal) that a main-pool worker picked up."""
    queued: int = 0
    """Of those, how many had to wait in the queue first (``queued / started`` estimates Erlang C)."""
    deadlock_episodes: int = 0
    """Times a starvation deadlock began: every worker of a pool blocked on calls that wait in it."""
    deadlock_s: float = 0.0
    """Simulated seconds spent in starvation deadlock."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """The figures of one run."""

    engine: str
    """``fast`` or ``simpy``."""
    offered_per_s: float
    """lambda, external requests per second."""
    throughput_per_s: float
    """Successful external responses per second of arrival window (goodput)."""
    latency: LatencySummary | None
    """Latency of successful external requests, None when none succeeded (JSON:
    :func:`~loopscope.analysis.stats.latency_json_s`)."""
    p99_all_s: float | None
    """p99 over every external request, a failed or timed-out one counting as the client timeout
    (None when that is unset and the p99 falls on a failure)."""
    utilisation_pct: float
    """Share of main-pool worker time held (computing or blocked), percent."""
    blocked_pct: float
    """Share of main-pool worker time spent blocked on internal calls, percent."""
    mean_queue_len: float
    """Time-average main-pool queue length per instance."""
    max_queue_len: int
    """Longest main-pool queue seen."""
    wait_prob: float | None
    """Share of main-pool requests that had to queue (Erlang C for M/M/c); None if none started."""
    offered: int
    """External requests."""
    ok: int
    """Successful external requests."""
    timeouts: int
    """External client timeouts."""
    rejected: int
    """503 answers (queue full or too old)."""
    errors: int
    """5xx answers caused by failed internal calls."""
    unfinished: int
    """Requests left hanging at the end (deadlock with no timeouts)."""
    call_timeouts: int
    """Internal calls that timed out."""
    deadlock_episodes: int
    """Starvation deadlocks that began."""
    deadlock_s: float
    """Simulated seconds in starvation deadlock."""
    simulated_s: float
    """Simulated time of the run, seconds."""


def summarize_trace(trace: Trace, scenario: Scenario) -> SimResult:
    """Turn an engine's trace into figures."""
    window = trace.last_arrival_s if trace.last_arrival_s > 0 else 1e-12
    end = trace.end_s if trace.end_s > 0 else 1e-12
    capacity = float(scenario.instances * scenario.workers) * end
    return SimResult(
        engine=trace.engine,
        offered_per_s=scenario.arrival_rate_per_s,
        throughput_per_s=trace.ok / window,
        latency=summarize_latencies(trace.latencies_s) if trace.latencies_s else None,
        p99_all_s=percentile_with_failures(
            trace.latencies_s, trace.offered - trace.ok, 99.0, scenario.request_timeout_s
        ),
        utilisation_pct=100.0 * trace.busy_s / capacity,
        blocked_pct=100.0 * trace.blocked_s / capacity,
        mean_queue_len=trace.queue_wait_s / end / scenario.instances,
        max_queue_len=trace.max_queue_len,
        wait_prob=trace.queued / trace.started if trace.started else None,
        offered=trace.offered,
        ok=trace.ok,
        timeouts=trace.timeouts,
        rejected=trace.rejected,
        errors=trace.errors,
        unfinished=trace.unfinished,
        call_timeouts=trace.call_timeouts,
        deadlock_episodes=trace.deadlock_episodes,
        deadlock_s=trace.deadlock_s,
        simulated_s=trace.end_s,
    )

"""Rate sweeps over designs and instance counts, knees, and findings from simulation results."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loopscope.model import Finding, Severity
from loopscope.sim.engine import simulate_fast
from loopscope.sim.result import SimResult
from loopscope.sim.scenario import Node, Scenario

__all__ = [
    "SweepCurve",
    "SweepPoint",
    "capacity_per_s",
    "check_results",
    "default_rates",
    "find_knee",
    "run_sweep",
]

Engine = Callable[[Scenario], SimResult]


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    """One rate of a sweep."""

    offered_per_s: float
    """Offered external rate, requests per second."""
    goodput_per_s: float
    """Successful responses per second."""
    p99_s: float | None
    """99th percentile latency of successful responses, seconds."""


def find_knee(
    points: Sequence[SweepPoint], *, goodput_ratio: float = 0.9, p99_factor: float = 5.0
) -> float | None:
    """The knee of a sweep: the lowest offered rate where goodput falls below ``goodput_ratio`` of the
    offered rate, or p99 exceeds ``p99_factor`` times the p99 at the lowest rate.

    Example: offered 10/20/40 with goodput 10/19.9/12 -> knee 40.

    Returns:
        The offered rate of the knee, requests per second, or None if the sweep never bends.
    """
    ordered = sorted(points, key=lambda p: p.offered_per_s)
    base_p99 = next((p.p99_s for p in ordered if p.p99_s is not None), None)
    for point in ordered:
        if point.goodput_per_s < goodput_ratio * point.offered_per_s:
            return point.offered_per_s
        if base_p99 is not None and point.p99_s is not None and point.p99_s > p99_factor * base_p99:
            return point.offered_per_s
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepCurve:
    """One design at one instance count, over rising rates."""

    design: str
    """Design name."""
    instances: int
    """M."""
    results: tuple[SimResult, ...]
    """One result per rate, by rising rate."""
    knee_per_s: float | None
    """Knee of the curve (:func:`find_knee`), None if it never bends."""


def capacity_per_s(root: Node, workers: int, instances: int) -> float:
    """Rate at which the root's own thread-time alone fills every worker: M N / E[thread time of the
    root without waiting]. An upper bound for any design; self-calls saturate earlier."""
    from loopscope.sim.scenario import flatten_node

    flat = flatten_node(root)
    busy = sum(d.expected_s for d in flat.works)
    busy += sum(sum(d.expected_s for d in target.works) for _, target in flat.remote)
    return instances * workers / busy if busy > 0 else float("inf")


def default_rates(low_capacity: float, high_capacity: float, steps: int = 12) -> list[float]:
    """``steps`` geometrically spaced rates from 20% of ``low_capacity`` to 130% of ``high_capacity``
    (the capacities of the smallest and largest instance counts), 3 significant digits."""
    lo, hi = 0.2 * low_capacity, 1.3 * high_capacity
    ratio = (hi / lo) ** (1.0 / (steps - 1)) if steps > 1 else 1.0
    return [float(f"{lo * ratio**i:.3g}") for i in range(steps)]


def run_sweep(
    base: Scenario,
    designs: dict[str, Node],
    rates_per_s: Sequence[float],
    instance_counts: Sequence[int],
    *,
    engine: Engine = simulate_fast,
    progress: Callable[[str], None] | None = None,
) -> list[SweepCurve]:
    """Simulate every design x instance count x rate (rates are totals over all instances).

    Args:
        base: every setting except root, instances and arrival rate.
        designs: design name -> call tree.
        rates_per_s: offered rates.
        instance_counts: values of M.
        engine: :func:`~loopscope.sim.engine.simulate_fast` or the simpy model.
        progress: called with a short label before each run.
    """
    curves = []
    for name, root in designs.items():
        for m in instance_counts:
            results = []
            for rate in sorted(rates_per_s):
                if progress:
                    progress(f"{name} M={m} at {rate:g}/s")
                sc = dataclasses.replace(base, root=root, instances=m, arrival_rate_per_s=rate)
                results.append(engine(sc))
            knee = find_knee(
                [
                    SweepPoint(
                        offered_per_s=r.offered_per_s,
                        goodput_per_s=r.throughput_per_s,
                        p99_s=r.p99_all_s,
                    )
                    for r in results
                ]
            )
            curves.append(
                SweepCurve(design=name, instances=m, results=tuple(results), knee_per_s=knee)
            )
    return curves


def check_results(curves: Sequence[SweepCurve]) -> list[Finding]:
    """Findings, one per curve at most of each code, at the lowest rate where it shows:
    ``STARVATION_DEADLOCK`` (high) when a pool deadlocked on its own calls, ``GOODPUT_COLLAPSE``
    (medium) when under half the offered requests succeeded."""
    findings = []
    for c in curves:
        label = f"{c.design} with {c.instances} instance{'s' if c.instances > 1 else ''}"
        dead = [r for r in c.results if r.deadlock_episodes]
        if dead:
            r = dead[0]
            findings.append(
                Finding(
                    code="STARVATION_DEADLOCK",
                    severity=Severity.HIGH,
                    subject=label,
                    evidence=(
                        f"from {r.offered_per_s:g}/s: {r.deadlock_episodes} deadlocks, "
                        f"{r.deadlock_s:.1f} s of {r.simulated_s:.1f} s with every worker blocked on "
                        f"calls queued behind them"
                    ),
                    remedy=(
                        "call the code in-process, send internal calls to a separate pool, or make "
                        "them non-blocking; always set client timeouts on internal calls"
                    ),
                )
            )
        collapsed = [r for r in c.results if r.offered and r.ok < 0.5 * r.offered]
        if collapsed:
            r = collapsed[0]
            findings.append(
                Finding(
                    code="GOODPUT_COLLAPSE",
                    severity=Severity.MEDIUM,
                    subject=label,
                    evidence=(
                        f"from {r.offered_per_s:g}/s: {r.ok} of {r.offered} requests succeeded "
                        f"({r.throughput_per_s:.1f}/s goodput)"
                    ),
                    remedy="stay below the knee, bound the queue, or remove blocking self-calls",
                )
            )
    return findings

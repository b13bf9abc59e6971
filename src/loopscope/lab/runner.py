"""Run lab designs at rising rates on real servers, simulate the same scenario, compare the curves.

Each (design, rate) point gets fresh servers, so a collapse at one rate does not leak into the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loopscope.errors import UsageError
from loopscope.lab.calibrate import measure_http_rtt_s
from loopscope.lab.loadgen import LoadResult, run_load
from loopscope.lab.server import LabServer
from loopscope.sim.engine import run_fast
from loopscope.sim.result import SimResult, Trace, summarize_trace
from loopscope.sim.scenario import DistKind, Scenario, ServiceDist, make_design
from loopscope.sim.sweep import SweepPoint, find_knee

__all__ = [
    "LAB_DESIGNS",
    "Calibration",
    "LabConfig",
    "LabCurve",
    "LabPoint",
    "calibrate",
    "run_lab",
    "simulate_point",
]

LAB_DESIGNS: tuple[str, ...] = ("selfcall", "inprocess", "pool")
"""Designs the lab server implements (endpoint names)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LabConfig:
    """One lab comparison."""

    designs: tuple[str, ...] = ("selfcall", "inprocess")
    """Designs to run, from :data:`LAB_DESIGNS`."""
    rates_per_s: tuple[float, ...] = (20.0, 40.0, 60.0, 80.0)
    """Offered rates, requests per second."""
    server: str = "gunicorn"
    """``gunicorn`` (gthread) or ``waitress``."""
    threads: int = 4
    """Worker threads of the main server (N)."""
    pool_threads: int = 4
    """Worker threads of the separate pool server."""
    work_ms: float = 20.0
    """Work of the external endpoint, ms (a sleep: holds a thread, not the CPU)."""
    child_ms: float = 20.0
    """Work of each internal call's callee, ms."""
    fanout: int = 1
    """Internal calls per external request (made one after the other)."""
    call_timeout_ms: float = 1000.0
    """Client timeout of internal HTTP calls, ms."""
    request_timeout_s: float = 2.0
    """Load generator's client timeout, seconds."""
    duration_s: float = 4.0
    """Sending window per point, seconds."""
    max_requests: int = 5000
    """Cap on requests per point."""
    sim_seeds: int = 5
    """Simulation runs per point (pooled)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Costs measured on the running lab server, fed to the simulation."""

    hop_s: float
    """Median round trip of an empty GET on a new loopback connection, seconds."""
    work_s: float
    """Effective service time of ``work_ms`` (sleep overshoot included), seconds."""
    child_s: float
    """Effective service time of ``child_ms``, seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LabPoint:
    """One design at one rate: measured and simulated."""

    design: str
    """Design name."""
    rate_per_s: float
    """Offered rate."""
    measured: LoadResult
    """What the load generator saw."""
    simulated: SimResult
    """What the model predicts for the same scenario and run length."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LabCurve:
    """All rates of one design, with the knees."""

    design: str
    """Design name."""
    points: tuple[LabPoint, ...]
    """By rising rate."""
    knee_measured_per_s: float | None
    """Knee of the measured curve (:func:`~loopscope.sim.sweep.find_knee`), None if none."""
    knee_simulated_per_s: float | None
    """Knee of the simulated curve."""


def _path(design: str, cfg: LabConfig) -> str:
    return (
        f"/{design}?work_ms={cfg.work_ms:g}&child_ms={cfg.child_ms:g}&fanout={cfg.fanout}"
        f"&timeout_ms={cfg.call_timeout_ms:g}"
    )


def calibrate(cfg: LabConfig) -> Calibration:
    """Measure the hop and effective service times on a fresh lab server."""
    with LabServer(kind=cfg.server, threads=cfg.threads) as srv:
        hop = measure_http_rtt_s(srv.hostport, count=40)
        work = measure_http_rtt_s(srv.hostport, f"/leaf?work_ms={cfg.work_ms:g}", count=10) - hop
        child = measure_http_rtt_s(srv.hostport, f"/leaf?work_ms={cfg.child_ms:g}", count=10) - hop
    return Calibration(hop_s=hop, work_s=max(0.0, work), child_s=max(0.0, child))


def simulate_point(cfg: LabConfig, cal: Calibration, design: str, rate: float) -> SimResult:
    """Simulate one lab point: same pool sizes, timeouts, sequential calls, constant service times,
    the calibrated hop, and the same number of requests (collapse depends on the run length)."""
    root = make_design(
        "selfcall" if design == "selfcall" else design,
        fanout=cfg.fanout,
        work=ServiceDist(kind=DistKind.CONSTANT, mean_s=cal.work_s),
        child_work=ServiceDist(kind=DistKind.CONSTANT, mean_s=cal.child_s),
        parallel=False,
    )
    count = max(1, min(cfg.max_requests, round(rate * cfg.duration_s)))
    pooled = Trace(engine="fast")  # the seeds' runs, pooled
    sc = None
    for seed in range(1, cfg.sim_seeds + 1):
        sc = Scenario(
            root=root,
            workers=cfg.threads,
            pool_workers=cfg.pool_threads,
            call_timeout_s=cfg.call_timeout_ms / 1000.0,
            request_timeout_s=cfg.request_timeout_s,
            hop_s=cal.hop_s,
            arrival_rate_per_s=rate,
            requests=count,
            seed=seed,
            poisson=False,
        )
        tr = run_fast(sc)
        pooled.latencies_s.extend(tr.latencies_s)
        for name in (
            "offered",
            "ok",
            "timeouts",
            "rejected",
            "errors",
            "unfinished",
            "call_timeouts",
            "deadlock_episodes",
            "started",
            "queued",
            "last_arrival_s",
            "end_s",
            "busy_s",
            "blocked_s",
            "queue_wait_s",
            "deadlock_s",
        ):
            setattr(pooled, name, getattr(pooled, name) + getattr(tr, name))
        pooled.max_queue_len = max(pooled.max_queue_len, tr.max_queue_len)
    assert sc is not None
    return summarize_trace(pooled, sc)


def run_lab(
    cfg: LabConfig,
    cal: Calibration,
    progress: Callable[[str], None] | None = None,
) -> list[LabCurve]:
    """Run every design at every rate on fresh servers, and simulate each point.

    Ctrl-C (KeyboardInterrupt) stops the run: the points finished so far are returned (a curve
    per design that has any), fewer than designs x rates.

    Raises:
        UsageError: unknown design or bad rates.
        BackendUnavailable / ProbeError: the server could not start.
    """
    for design in cfg.designs:
        if design not in LAB_DESIGNS:
            raise UsageError(f"unknown lab design {design!r}: use {', '.join(LAB_DESIGNS)}")
    if not cfg.rates_per_s or min(cfg.rates_per_s) <= 0:
        raise UsageError("rates must be > 0")
    curves = []
    interrupted = False
    for design in cfg.designs:
        if interrupted:
            break
        points = []
        for rate in sorted(cfg.rates_per_s):
            if progress:
                progress(f"{design} at {rate:g}/s")
            try:  # Ctrl-C (or TERM/HUP, see loopscope.cli.signals): the point's servers are stopped
                measured = _measure(cfg, design, rate)
                simulated = simulate_point(cfg, cal, design, rate)
            except KeyboardInterrupt:
                interrupted = True
                break
            points.append(
                LabPoint(design=design, rate_per_s=rate, measured=measured, simulated=simulated)
            )
        if not points:
            continue
        curves.append(
            LabCurve(
                design=design,
                points=tuple(points),
                knee_measured_per_s=find_knee(
                    [
                        SweepPoint(
                            offered_per_s=p.rate_per_s,
                            goodput_per_s=p.measured.goodput_per_s,
                            p99_s=p.measured.p99_all_s,
                        )
                        for p in points
                    ]
                ),
                knee_simulated_per_s=find_knee(
                    [
                        SweepPoint(
                            offered_per_s=p.rate_per_s,
                            goodput_per_s=p.simulated.throughput_per_s,
                            p99_s=p.simulated.p99_all_s,
                        )
                        for p in points
                    ]
                ),
            )
        )
    return curves


def _measure(cfg: LabConfig, design: str, rate: float) -> LoadResult:
    def load(hostport: str) -> LoadResult:
        return run_load(
            hostport,
            _path(design, cfg),
            rate_per_s=rate,
            duration_s=cfg.duration_s,
            timeout_s=cfg.request_timeout_s,
            max_requests=cfg.max_requests,
        )

    if design == "pool":
        with (
            LabServer(kind=cfg.server, threads=cfg.pool_threads) as pool,
            LabServer(kind=cfg.server, threads=cfg.threads, pool_hostport=pool.hostport) as main,
        ):
            return load(main.hostport)
    with LabServer(kind=cfg.server, threads=cfg.threads) as main:
        return load(main.hostport)

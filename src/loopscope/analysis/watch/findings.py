"""Findings over a watch report (pure): self-calls, hot-path self-calls, accept queue saturation,
ephemeral port pressure, health checks that slow down under load."""

from __future__ import annotations

import bisect
import statistics

from loopscope.analysis.watch.report import AppStats, WatchReport
from loopscope.model import Finding, Severity

__all__ = ["HEALTH_PATHS", "check_watch", "correlation"]

HEALTH_PATHS = ("/health", "/healthz", "/ready", "/readyz", "/live", "/livez", "/ping", "/status")
EPHEMERAL_PRESSURE_PCT = 50.0
HEALTH_MIN_SAMPLES = 6
HEALTH_MIN_CORRELATION = 0.6
HEALTH_MIN_SLOWDOWN = 2.0


def correlation(xs: list[float], ys: list[float]) -> float | None:
    """Pearson correlation of two equal-length series; None when undefined (fewer than 3, or flat).

    Example: ``correlation([1, 2, 3], [2, 4, 6]) == 1.0``.
    """
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return None


def _self_call(app: AppStats) -> list[Finding]:
    if app.self_connections == 0:
        return []
    rate = app.self_per_s
    factor = app.self_factor
    unit = app.unit
    count = app.self_requests if app.self_requests is not None else app.self_connections
    factor_txt = (
        f"{factor:g} self-call {unit} per external {unit[:-1]}"
        if factor is not None
        else "no external traffic in the window"
    )
    out = [
        Finding(
            code="SELF_CALL",
            severity=Severity.LOW,
            subject=app.name,
            evidence=f"{count} loopback {unit} from the app to its own listener(s) {list(app.ports)} in "
            f"{app.window_s:.1f} s ({rate:.1f} connections/s); {factor_txt}"
            + _self_paths_text(app),
            remedy="call the code in-process instead of over HTTP, or give internal calls their own pool "
            "and keep-alive so they do not compete with external requests for workers",
        )
    ]
    if factor is not None and factor >= 1.0:
        paths = ", ".join(
            f"{p} x{f:g}"
            for p, f in sorted(app.per_path_factor.items(), key=lambda kv: -kv[1])
            if f
        )
        out.append(
            Finding(
                code="SELF_CALL_ON_HOT_PATH",
                severity=Severity.HIGH if factor >= 2 else Severity.MEDIUM,
                subject=app.name,
                evidence=f"amplification {factor:g}: every external {unit[:-1]} causes {factor:g} more {unit} to "
                f"the same app" + (f" (per path: {paths})" if paths else ""),
                remedy="each external request holds a worker while it waits on its own internal calls: under load "
                "the workers wait on each other (self-deadlock). Inline the internal call, or serve it "
                "from a separate worker pool",
            )
        )
    return out


def _self_paths_text(app: AppStats, top: int = 3) -> str:
    """``"; it requests POST /wp-cron.php x26, GET /?rest_route=/a x8"`` (the busiest self-call paths,
    ``--http`` only); empty without them."""
    if not app.self_paths:
        return ""
    shown = list(app.self_paths.items())[:top]
    more = len(app.self_paths) - len(shown)
    text = ", ".join(f"{path} x{n}" for path, n in shown)
    return f"; it requests {text}" + (f" and {more} more paths" if more > 0 else "")


def _health(app: AppStats) -> list[Finding]:
    out = []
    for path, lats in app.latency_by_path_ms.items():
        if not path.rstrip("/").endswith(HEALTH_PATHS) or len(lats) < HEALTH_MIN_SAMPLES:
            continue
        times = app.latency_times_s.get(path, [])
        # load at each health check: other requests in flight then (started, not yet answered)
        spans = sorted(
            (t, t + ms / 1000)
            for p, ts in app.latency_times_s.items()
            if p != path
            for t, ms in zip(ts, app.latency_by_path_ms.get(p, []), strict=False)
        )
        if not spans:
            continue
        starts = [a for a, _ in spans]
        longest = max(b - a for a, b in spans)
        load = []
        for t in times:
            lo, hi = bisect.bisect_left(starts, t - longest), bisect.bisect_right(starts, t)
            load.append(float(sum(1 for a, b in spans[lo:hi] if b >= t)))
        r = correlation(load, lats)
        fast = min(lats)
        slow = max(lats)
        if (
            r is not None
            and r >= HEALTH_MIN_CORRELATION
            and fast > 0
            and slow / fast >= HEALTH_MIN_SLOWDOWN
        ):
            out.append(
                Finding(
                    code="HEALTH_CHECK_SLOW_UNDER_LOAD",
                    severity=Severity.MEDIUM,
                    subject=f"{app.name} {path}",
                    evidence=f"{len(lats)} health checks: {fast:.1f}-{slow:.1f} ms, correlation with request "
                    f"load r={r:.2f}",
                    remedy="the health check queues behind real work: serve it from a dedicated thread or port, "
                    "or a load balancer will mark a busy but healthy app down",
                )
            )
    return out


def check_watch(report: WatchReport) -> list[Finding]:
    """Findings for one window, most severe first."""
    findings: list[Finding] = []
    for app in report.apps:
        findings += _self_call(app)
        findings += _health(app)
    for lp in report.listeners:
        if lp.saturated_samples:
            findings.append(
                Finding(
                    code="ACCEPT_QUEUE_SATURATED",
                    severity=Severity.HIGH,
                    subject=lp.listener,
                    evidence=f"accept queue at its limit {lp.backlog} in {lp.saturated_samples} of {lp.samples} "
                    f"snapshots (max {lp.max_accept_queue})",
                    remedy="the app accepts slower than connections arrive: add workers, raise the listen() "
                    "backlog and net.core.somaxconn, or find what blocks the workers (self-calls?)",
                )
            )
    if report.ephemeral_range_size:
        for dest, n in report.max_ephemeral.items():
            pct = 100.0 * n / report.ephemeral_range_size
            if pct >= EPHEMERAL_PRESSURE_PCT:
                findings.append(
                    Finding(
                        code="EPHEMERAL_PORT_PRESSURE",
                        severity=Severity.MEDIUM,
                        subject=dest,
                        evidence=f"{n} client ports toward {dest} ({pct:.0f}% of {report.ephemeral_range_size})",
                        remedy="reuse connections (keep-alive pools), spread over several loopback addresses "
                        "(127.0.0.2...), or widen net.ipv4.ip_local_port_range",
                    )
                )
    findings.sort(key=lambda f: -f.severity.rank)
    return findings

"""Findings over a traces report (pure): ``SELF_CALL`` and ``SELF_CALL_ON_HOT_PATH`` per entry endpoint.

The codes, severities and remedies are those of ``watch`` (:mod:`loopscope.analysis.watch.findings`);
here the subject names the endpoint and the evidence adds the internal endpoints and the waiting time.
"""

from __future__ import annotations

from loopscope.analysis.traces.report import EndpointStats, TracesReport
from loopscope.model import Finding, Severity

__all__ = ["HOT_PATH_MIN_AMPLIFICATION", "check_traces"]

HOT_PATH_MIN_AMPLIFICATION = 1.0
"""An endpoint whose requests make at least this many self-calls each is on the hot path."""


def _self_call(ep: EndpointStats) -> list[Finding]:
    if not ep.self_calls:
        return []
    subject = f"{ep.service} {ep.endpoint}"
    out = [
        Finding(
            code="SELF_CALL",
            severity=Severity.LOW,
            subject=subject,
            evidence=f"{ep.self_calls} self-calls in {ep.requests} requests "
            f"({ep.requests_with_self_calls} of them made any): {ep.call_summary}; "
            f"{ep.waiting_share * 100:.0f}% of the request time waits on them",
            remedy="call the code in-process instead of over HTTP, or give internal calls their own pool "
            "and keep-alive so they do not compete with external requests for workers",
        )
    ]
    if ep.amplification >= HOT_PATH_MIN_AMPLIFICATION:
        out.append(
            Finding(
                code="SELF_CALL_ON_HOT_PATH",
                severity=Severity.HIGH if ep.amplification >= 2 else Severity.MEDIUM,
                subject=subject,
                evidence=f"amplification {ep.amplification:.3g}: every {ep.endpoint} request makes "
                f"{ep.amplification:.3g} more requests to {ep.service} ({ep.call_summary}); p50 "
                f"{ep.p50_ms or 0:.1f} ms, {ep.waiting_share * 100:.0f}% of it waiting on itself",
                remedy="each external request holds a worker while it waits on its own internal calls: under "
                "load the workers wait on each other (self-deadlock). Inline the internal call, or serve "
                "it from a separate worker pool",
            )
        )
    return out


def check_traces(report: TracesReport) -> list[Finding]:
    """Findings for every entry endpoint that calls its own service, most severe first.

    Example: ``shop GET /seq`` with amplification 2 gives ``SELF_CALL`` (low) and
    ``SELF_CALL_ON_HOT_PATH`` (high).
    """
    out = [f for ep in report.endpoints for f in _self_call(ep)]
    return sorted(out, key=lambda f: -f.severity.rank)

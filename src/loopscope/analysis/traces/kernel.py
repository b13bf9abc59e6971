"""Kernel vs trace (pure): the connections ``watch`` saw from an app to itself beside the self-call spans
its traces hold, for ``loopscope trace -- CMD``.

A self-call span (a CLIENT span of service S whose server is S) and a connection the kernel saw from the
app's processes to the app's own listener count the same thing when each request opens its own
connection (urllib, ``requests`` without a session). When they differ, the difference is reported with its
likely cause, never hidden:

- kernel < spans: keep-alive reuse (an HTTP client pool sends several requests per connection; with
  ``--http`` the kernel side counts requests and then agrees), or, without eBPF, short-lived connections
  whose client process the kernel sources could not name;
- kernel > spans: a client library without OpenTelemetry instrumentation (or a non-HTTP protocol) calls
  the app, or head sampling dropped traces (the spans are then about ``ratio`` of the kernel's count).
"""

from __future__ import annotations

from dataclasses import dataclass

from loopscope.analysis.traces.report import ServiceStats, TracesReport
from loopscope.analysis.watch.report import AppStats, WatchReport
from loopscope.model import Finding, Gap, Severity

__all__ = ["KernelComparison", "KernelRow", "compare_kernel", "kernel_findings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelRow:
    """One app as the kernel saw it beside the traced service that serves its ports."""

    service: str | None
    """``service.name`` of the traced service on the app's ports; None when no server span came in on them."""
    app: str | None
    """Kernel app label (``comm[pid,...]``); None when the kernel saw no listener for the service."""
    ports: tuple[int, ...]
    """Listening ports (kernel), or the server spans' ports when the kernel has no app."""
    kernel_self_connections: int
    """Connections from the app's processes to its own listeners (watch)."""
    kernel_self_requests: int | None
    """HTTP requests on those connections (``--http`` capture); None without it."""
    trace_self_calls: int
    """Self-call CLIENT spans of the service."""
    kernel_outbound_connections: int
    """Connections from the app to other local listeners, the trace receiver excepted."""
    trace_other_calls: int
    """CLIENT spans of the service toward other services (local or not)."""
    agree: bool
    """The kernel's self-call count (requests when captured, else connections) equals the span count."""
    cause: str
    """Why they agree or what most likely explains the difference, in plain words."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelComparison:
    """Every app/service pair, and which kernel sources answered."""

    rows: tuple[KernelRow, ...]
    """One per app or traced service, matched by port."""
    client_pid_source: bool
    """eBPF sockops was on: the kernel knew the client process of every connect."""
    sources: tuple[str, ...]
    """Kernel sources that answered (``ebpf_sockops``, ``sock_diag_destroy``, ``snapshots``...)."""


def _cause(
    kernel: int, requests: int | None, spans: int, *, pid_known: bool, ratio: float | None
) -> tuple[bool, str]:
    counted = requests if requests is not None else kernel
    unit = "requests" if requests is not None else "connections"
    if counted == spans:
        if requests is not None and kernel < requests:
            return (
                True,
                f"agree on requests; keep-alive reuse: {requests} requests on {kernel} connections",
            )
        return True, f"agree: one connection per self-call ({spans})"
    if counted < spans:
        if not pid_known and requests is None:
            return False, (
                f"kernel {kernel} < {spans} spans: without eBPF the kernel sources do not name the client "
                "process of short-lived connections (run as root), or keep-alive reuse"
            )
        if requests is None:
            return False, (
                f"kernel {kernel} connections < {spans} spans: keep-alive reuse (connections < requests: "
                "a client pool sends several requests per connection); --http counts the requests"
            )
        return False, (
            f"kernel {requests} requests < {spans} spans: requests the capture missed (TLS, HTTP/2) "
            "or spans from a clock window longer than the watch"
        )
    if ratio is not None and ratio < 1:
        return False, (
            f"kernel {counted} {unit} > {spans} spans: head sampling at {ratio:g} kept about "
            f"{spans / counted:.2f} of them (expected {ratio:g})"
        )
    return False, (
        f"kernel {counted} {unit} > {spans} spans: calls to itself without a CLIENT span: an untraced "
        "client library or protocol (not instrumented), health checks or retries, or sampling"
    )


def _match(svc: list[ServiceStats], app: AppStats) -> ServiceStats | None:
    by_port = [s for s in svc if set(s.ports) & set(app.ports)]
    return by_port[0] if by_port else None


def compare_kernel(
    traces: TracesReport, watch: WatchReport, *, ignore_ports: tuple[int, ...] = ()
) -> KernelComparison:
    """Pair each kernel app with the traced service on its ports and compare their self-call counts.

    Args:
        traces: the trace report of the spans received.
        watch: the watch report, already scoped to the command's processes (``filter_report``).
        ignore_ports: local ports whose connections are not the app's own calls (the trace receiver:
            the exporter's connections are not spans).

    Returns:
        One row per kernel app (a lone app and a lone service pair up even without a port in common),
        then one per traced service no app matched.

    Example: an app on port 8000 whose kernel self-connections are 40 beside a service ``shop`` with
    server spans on 8000 and 40 self-call spans -> ``KernelRow(service="shop", agree=True, ...)``.
    """
    services = [s for s in traces.services if s.requests or s.self_calls or s.ports]
    pid_known = any(s.name == "ebpf_sockops" and s.active for s in watch.sources)
    used: set[str] = set()
    rows: list[KernelRow] = []
    for app in watch.apps:
        match = _match(services, app)
        if match is None and len(watch.apps) == 1 and len(services) == 1:
            match = services[0]
        if match is not None:
            used.add(match.service)
        outbound = sum(
            e.connections
            for e in watch.edges
            if e.client_app == app.key and not e.self_call and e.port not in ignore_ports
        )
        spans = match.self_calls if match is not None else 0
        agree, cause = _cause(
            app.self_connections,
            app.self_requests,
            spans,
            pid_known=pid_known,
            ratio=traces.sample_ratio,
        )
        if match is None:
            cause = "no server span came in on these ports: the app is not traced " + (
                "(no OpenTelemetry instrumentation of its server library?)"
            )
            agree = app.self_connections == 0
        rows.append(
            KernelRow(
                service=match.service if match is not None else None,
                app=app.name,
                ports=app.ports,
                kernel_self_connections=app.self_connections,
                kernel_self_requests=app.self_requests,
                trace_self_calls=spans,
                kernel_outbound_connections=outbound,
                trace_other_calls=match.other_calls if match is not None else 0,
                agree=agree,
                cause=cause,
            )
        )
    for s in services:
        if s.service not in used:
            rows.append(
                KernelRow(
                    service=s.service,
                    app=None,
                    ports=s.ports,
                    kernel_self_connections=0,
                    kernel_self_requests=None,
                    trace_self_calls=s.self_calls,
                    kernel_outbound_connections=0,
                    trace_other_calls=s.other_calls,
                    agree=s.self_calls == 0,
                    cause="the kernel saw no listener owned by the command's processes on these ports "
                    "(the app lived shorter than one full read of socket owners, a listener inherited "
                    "from outside the command, or another namespace)"
                    + (
                        ""
                        if pid_known
                        else "; without eBPF the client process of short-lived connections is unknown"
                    ),
                )
            )
    return KernelComparison(
        rows=tuple(rows),
        client_pid_source=pid_known,
        sources=tuple(s.name for s in watch.sources if s.active),
    )


def kernel_findings(comparison: KernelComparison) -> tuple[list[Finding], list[Gap]]:
    """A ``TRACE_KERNEL_MISMATCH`` finding and a gap per row whose counts differ.

    Example: kernel 40 self-connections beside 60 self-call spans, eBPF on -> one finding (low) whose
    evidence names keep-alive reuse, and a gap ``self-calls of shop`` with the same cause.
    """
    findings: list[Finding] = []
    gaps: list[Gap] = []
    for row in comparison.rows:
        if row.agree:
            continue
        subject = row.service or row.app or "?"
        kernel = (
            f"{row.kernel_self_requests} requests on {row.kernel_self_connections} connections"
            if row.kernel_self_requests is not None
            else f"{row.kernel_self_connections} connections"
        )
        findings.append(
            Finding(
                code="TRACE_KERNEL_MISMATCH",
                severity=Severity.LOW,
                subject=subject,
                evidence=f"kernel saw {kernel} from the app to itself, traces hold "
                f"{row.trace_self_calls} self-call spans: {row.cause}",
                remedy="instrument every HTTP client library the app uses (opentelemetry-instrumentation-*), "
                "run with --http (root) to count requests, and as root for eBPF's client pids",
            )
        )
        gaps.append(
            Gap(
                what=f"self-calls of {subject} (kernel vs trace)",
                reason=row.cause,
                count=abs(
                    (row.kernel_self_requests or row.kernel_self_connections) - row.trace_self_calls
                ),
            )
        )
    return findings, gaps

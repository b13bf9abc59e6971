"""``loopscope probe``: try every address a local client might use, side by side, then explain failures
with the listener table (the foundation's snapshot), the firewall and the latency pattern.

The addresses are probed in parallel threads, so a firewall that drops SYNs costs one timeout, not one
per address. The snapshot and the firewall are read only when something failed (a clean probe stays
well under 50 ms).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from loopscope.analysis.probe.diagnose import diagnose
from loopscope.analysis.probe.expect import Expectation, ExpectationResult, check_results
from loopscope.errors import LoopscopeError
from loopscope.model import Finding, Gap, InterfaceAddress, Severity
from loopscope.model.probe import AddressResult, Candidate, Fingerprint, ProbeTarget
from loopscope.probes.connect import probe_series
from loopscope.probes.target import candidates_for

__all__ = ["HTTPS_PORTS", "NON_HTTP_PORTS", "ProbeReport", "choose_mode", "run_probe"]

HTTPS_PORTS = frozenset({443, 4443, 6443, 8443, 9443})
"""Ports where ``auto`` starts with TLS."""
NON_HTTP_PORTS = frozenset(
    {
        21,
        22,
        23,
        25,
        53,
        110,
        143,
        389,
        465,
        587,
        636,
        993,
        995,
        1433,
        1521,
        2049,
        3306,
        5432,
        5672,
        5900,
        6379,
        9042,
        11211,
        27017,
    }
)
"""Ports where ``auto`` only connects and fingerprints (no HTTP request is sent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReport:
    """Everything one probe found."""

    target: ProbeTarget
    """What was asked."""
    mode: str
    """``tcp``, ``http`` or ``https``: what was spoken."""
    results: tuple[AddressResult, ...]
    """One row per address."""
    findings: tuple[Finding, ...]
    """Diagnosis and failed expectations."""
    checks: tuple[ExpectationResult, ...]
    """Expectation results (empty when none asked)."""
    fingerprint: Fingerprint | None
    """What answers, in tcp mode."""
    gaps: tuple[Gap, ...]
    """What could not be read for the diagnosis."""
    elapsed_s: float
    """Wall time of the whole probe, seconds."""


def choose_mode(target: ProbeTarget) -> str:
    """``tcp``/``http``/``https`` from the scheme, the path and the port.

    Example: ``choose_mode(ProbeTarget(host=None, port=6379, path=None, scheme="auto")) == "tcp"``.
    """
    if target.scheme != "auto":
        return target.scheme
    if target.port in HTTPS_PORTS:
        return "https"
    if target.port in NON_HTTP_PORTS and target.path is None:
        return "tcp"
    return "http"


def _probe_all(
    cands: Sequence[Candidate], target: ProbeTarget, mode: str, count: int, timeout_s: float
) -> list[AddressResult]:
    host = target.host if target.host and not any(c == ":" for c in target.host) else None

    def one(c: Candidate) -> AddressResult:
        host_header = f"{target.host}:{target.port}" if host else None
        attempts = probe_series(
            c.address,
            target.port,
            mode=mode,
            count=count,
            path=target.path or "/",
            host_header=host_header,
            server_name=host,
            timeout_s=timeout_s,
        )
        return AddressResult(candidate=c, attempts=tuple(attempts))

    if len(cands) == 1:
        return [one(cands[0])]
    with ThreadPoolExecutor(max_workers=len(cands)) as pool:
        return list(pool.map(one, cands))


def _speaks_tls(results: Sequence[AddressResult]) -> bool:
    for r in results:
        for a in r.attempts:
            if a.error == "server speaks TLS":
                return True
            if a.http is not None and a.http.status == 400 and b"HTTPS port" in a.http.body:
                return True
    return False


def _not_http(results: Sequence[AddressResult]) -> bool:
    tried = [a for r in results for a in r.attempts if a.phase != "connect"]
    return bool(tried) and all(
        a.phase == "read" and a.error in ("not HTTP", "ECONNRESET") for a in tried
    )


def _diagnosis_inputs(port: int) -> tuple[list, list, object, list[Gap]]:  # type: ignore[type-arg]
    """Listeners here and elsewhere, the firewall, gaps (I/O: snapshots and rulesets)."""
    from loopscope.analysis.firewall.parse import parse_firewall_facts
    from loopscope.analysis.listeners import find_listeners
    from loopscope.backends.linux.firewall import read_firewall
    from loopscope.collect import Collector, OwnerScope, States

    gaps: list[Gap] = []
    # one set of snapshots, one fd scan: the listeners of every namespace (this one first)
    collector = Collector(states=States.LISTENING, owner_scope=OwnerScope.LISTENERS)
    try:
        run = collector.read_all(all_netns=True)
        others = run.snapshots[1:]
        other_gaps = [s.gap() for s in run.skipped]
    except LoopscopeError as exc:
        run, others = collector.read_all(), []
        other_gaps = [Gap(what="other network namespaces", reason=str(exc))]
    snap = run.snapshots[0]
    here = find_listeners(snap)
    gaps += list(snap.gaps)
    elsewhere = []
    if not any(li.local.port == port for li in here):
        for other in others:
            if other.netns != snap.netns:
                elsewhere += find_listeners(other)
        gaps += other_gaps
    ruleset, errors = parse_firewall_facts(read_firewall())
    gaps += [Gap(what="firewall ruleset", reason=e) for e in errors]
    return here, elsewhere, ruleset, gaps


def run_probe(
    target: ProbeTarget,
    *,
    count: int = 1,
    timeout_s: float = 2.0,
    expectations: Sequence[Expectation] = (),
    diagnose_failures: bool = True,
    addresses: list[InterfaceAddress] | None = None,
    fingerprint: bool = True,
) -> ProbeReport:
    """Probe a target on every candidate address.

    Args:
        target: parsed target.
        count: tries per address (p50/p99 need several).
        timeout_s: per-phase timeout, seconds.
        expectations: checks that must hold on every address.
        diagnose_failures: on failure, read the listener table and firewall to explain it.
        addresses: interface addresses (None: read via rtnetlink).
        fingerprint: in tcp mode, identify the service on the first address that connects.

    Raises:
        UsageError: bad target or unresolvable host.
    """
    t0 = time.perf_counter()
    cands = candidates_for(target, addresses)
    mode = choose_mode(target)
    results = _probe_all(cands, target, mode, count, timeout_s)
    if mode == "http" and target.scheme == "auto" and _speaks_tls(results):
        mode = "https"
        results = _probe_all(cands, target, mode, count, timeout_s)
    elif mode == "http" and target.scheme == "auto" and target.path is None and _not_http(results):
        mode = "tcp"
        results = _probe_all(cands, target, mode, count, timeout_s)
    fp = None
    if fingerprint and mode == "tcp":
        from loopscope.probes.fingerprint import fingerprint_listener

        first_ok = next((r for r in results if r.ok), None)
        if first_ok is not None:
            fp = fingerprint_listener(
                (first_ok.candidate.address, target.port), min(timeout_s, 1.0)
            )
    findings: list[Finding] = []
    gaps: list[Gap] = []
    latencies = {
        r.candidate.address: [int(a.http.total_s * 1e9) for a in r.attempts if a.http is not None]
        for r in results
    }
    if diagnose_failures and any(not r.ok for r in results):
        here, elsewhere, ruleset, gaps = _diagnosis_inputs(target.port)
        findings = diagnose(
            results,
            port=target.port,
            listeners=here,
            other_netns=elsewhere,
            ruleset=ruleset,  # type: ignore[arg-type]
            latencies_ns=latencies,
        )
    else:
        findings = diagnose(
            results, port=target.port, listeners=[], latencies_ns=latencies
        )  # TLS expiry, Nagle
        if any(
            not r.ok for r in results
        ):  # --no-diagnose: without the listener table, do not guess
            findings = [f for f in findings if f.code != "PROBE_NOTHING_LISTENING"]
    checks = check_results(expectations, results) if expectations else []
    for c in checks:
        if not c.ok:
            findings.append(
                Finding(
                    code="PROBE_EXPECTATION_FAILED",
                    severity=Severity.HIGH,
                    subject=f"{c.target} port {target.port}",
                    evidence=f"expected {c.expectation}, got {c.got}",
                    remedy="fix the service or the expectation",
                )
            )
    return ProbeReport(
        target=target,
        mode=mode,
        results=tuple(results),
        findings=tuple(findings),
        checks=tuple(checks),
        fingerprint=fp,
        gaps=tuple(gaps),
        elapsed_s=time.perf_counter() - t0,
    )

"""Run the ladder: gather facts in each namespace, judge them, collect findings."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from loopscope.analysis.doctor.facts import DoctorFacts
from loopscope.analysis.doctor.ladder import judge
from loopscope.analysis.doctor.verdict import RungResult, Verdict, findings_of, worst
from loopscope.analysis.filters import filter_snapshot
from loopscope.doctor.gather import DoctorOptions, gather, gather_all
from loopscope.errors import UsageError
from loopscope.model import Finding, Gap

__all__ = ["DoctorReport", "NamespaceReport", "parse_external", "run_doctor"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceReport:
    """The ladder of one namespace."""

    facts: DoctorFacts
    """What was read."""
    rungs: tuple[RungResult, ...]
    """Judged rungs, lowest first."""
    findings: tuple[Finding, ...]
    """A finding per warn/fail check."""

    @property
    def verdict(self) -> Verdict:
        """Worst rung verdict."""
        return worst(r.verdict for r in self.rungs)


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorReport:
    """Every namespace examined."""

    namespaces: tuple[NamespaceReport, ...]
    """One per namespace, host first."""
    gaps: tuple[Gap, ...] = field(default_factory=tuple)
    """What could not be seen (namespaces that could not be entered, unattributed sockets)."""

    @property
    def findings(self) -> list[Finding]:
        """All findings, most severe first."""
        out = [f for ns in self.namespaces for f in ns.findings]
        out.sort(key=lambda f: -f.severity.rank)
        return out


def parse_external(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> ``(host, port)``.

    Example: ``parse_external("[::1]:8080") == ("::1", 8080)``.

    Raises:
        UsageError: no port, or a port outside 1..65535.
    """
    host, sep, port_s = spec.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        try:
            ipaddress.IPv6Address(spec)
            raise UsageError(f"--external {spec!r}: write IPv6 as [ADDR]:PORT")
        except ValueError:
            pass
    if not sep or not host or not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise UsageError(f"--external {spec!r}: expected HOST:PORT with a port 1-65535")
    return host, int(port_s)


def report_for(
    facts: DoctorFacts, ports: Sequence[int] = (), pids: Sequence[int] = ()
) -> NamespaceReport:
    """Judge one namespace's facts (pure); ``ports``/``pids`` narrow the service checks."""
    rungs = judge(facts, ports, pids)
    prefix = "" if facts.netns_label == "host" else f"netns {facts.netns_label}: "
    findings = tuple(
        Finding(
            code=f.code,
            severity=f.severity,
            subject=f.subject,
            evidence=f.evidence,
            remedy=f.remedy,
            netns=facts.snapshot.netns,
        )
        for f in findings_of(rungs, subject_prefix=prefix)
    )
    return NamespaceReport(facts=facts, rungs=tuple(rungs), findings=findings)


def run_doctor(
    netns: str | None,
    all_netns: bool,
    opts: DoctorOptions,
    on_progress: Callable[[str], None] | None = None,
) -> DoctorReport:
    """Gather and judge the ladder in one namespace (``netns``) or all of them.

    Raises:
        UsageError: --netns and --all-netns together, or an unknown namespace.
        NetnsError: the namespace cannot be entered.
    """
    if netns is not None and all_netns:
        raise UsageError("use --netns or --all-netns, not both")
    skipped: list[str] = []
    if all_netns:
        facts, skipped = gather_all(opts, on_progress)
    else:
        facts = gather([netns], opts, on_progress)
    gaps = [
        Gap(what=f"netns {line.split(':', 1)[0]}", reason=line.split(":", 1)[1].strip())
        for line in skipped
    ]
    for f in facts:
        gaps += [g for g in f.snapshot.gaps if g not in gaps]
    if (opts.ports or opts.pids) and not any(
        filter_snapshot(f.snapshot, opts.ports, opts.pids).sockets for f in facts
    ):
        what = [f"port {p}" for p in opts.ports] + [f"process {p}" for p in opts.pids]
        raise UsageError(f"no socket on {' or '.join(what)} in the namespaces examined")
    return DoctorReport(
        namespaces=tuple(report_for(f, opts.ports, opts.pids) for f in facts), gaps=tuple(gaps)
    )

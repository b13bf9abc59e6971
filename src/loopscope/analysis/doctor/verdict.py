"""Verdicts of doctor checks and rungs, and their findings (pure).

A check returns a :class:`CheckResult`; :func:`build_rung` folds a rung's checks into a
:class:`RungResult`; :func:`mark_meaningless` tells the rungs above a failed one that their results
do not mean much; :func:`findings_of` turns warn/fail checks into :class:`~loopscope.model.Finding`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from loopscope.model import Finding, Severity

__all__ = [
    "RUNG_NAMES",
    "CheckResult",
    "RungResult",
    "Verdict",
    "attach_causes",
    "build_rung",
    "findings_of",
    "mark_meaningless",
    "rung_verdict",
    "worst",
]

RUNG_NAMES = {1: "loopback stack", 2: "local network", 3: "external"}


class Verdict(str, enum.Enum):
    """Outcome of a check, ordered ``skipped < ok < warn < fail`` for :func:`worst`."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


_RANK = {Verdict.SKIPPED: 0, Verdict.OK: 1, Verdict.WARN: 2, Verdict.FAIL: 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One rung of the ladder's checks, judged.

    Example: ``CheckResult(id="lo.link", rung=1, title="lo exists and is UP", verdict=Verdict.FAIL,
    evidence="lo (index 1) flags: DOWN", remedy="ip -n blue link set lo up", code="LO_DOWN",
    severity=Severity.CRITICAL)``.
    """

    id: str
    """Stable check id, ``lo.link``, ``echo.tcp.127.0.0.1``."""
    rung: int
    """1 loopback stack, 2 local network, 3 external."""
    title: str
    """What is checked, in a few words."""
    verdict: Verdict
    """ok / warn / fail / skipped."""
    evidence: str
    """What was read or sent, with numbers."""
    remedy: str = ""
    """What to do, empty when ok."""
    code: str = ""
    """Finding code for warn/fail (``LO_DOWN``)."""
    severity: Severity | None = None
    """Finding severity for warn/fail; defaults to high for fail and medium for warn."""
    caused_by: tuple[str, ...] = ()
    """Ids of failed checks this result follows from (an echo fails because lo is down)."""
    depends_on: tuple[str, ...] = ()
    """Ids of checks whose failure explains this one's."""
    data: Mapping[str, object] = field(default_factory=dict)
    """Numbers behind the evidence, for JSON (``{"rtt_p50_us": 14.2}``)."""
    service_level: bool = False
    """True when the failure is about particular services (a listener bound to one family, a rule that
    drops one port), not the stack itself: the check fails and gives its finding, but its rung only warns
    (a rung fails for stack faults) and the rungs above stay meaningful."""
    subject: str = ""
    """Whom the finding is about when that is one service rather than the stack
    (``redis-server port 6379/tcp``); empty: the check's title."""

    @property
    def finding_severity(self) -> Severity | None:
        """Severity of the finding this result gives; None for ok and skipped."""
        if self.verdict is Verdict.FAIL:
            return self.severity or Severity.HIGH
        if self.verdict is Verdict.WARN:
            return self.severity or Severity.MEDIUM
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RungResult:
    """One rung: its checks and the worst verdict among them."""

    rung: int
    """1, 2 or 3."""
    name: str
    """``loopback stack``, ``local network``, ``external``."""
    verdict: Verdict
    """Worst verdict of the checks (skipped only if all were skipped), a failed ``service_level`` check
    counting as warn: the rung fails only for faults of the stack it tests."""
    checks: tuple[CheckResult, ...]
    """Checks in ladder order."""
    meaningful: bool = True
    """False when a rung below failed, so this rung's results say little."""
    not_meaningful_because: str = ""
    """Why not, naming the failed rung."""
    invalidates: tuple[int, ...] = ()
    """For a failed rung: the rungs above it that are therefore not meaningful."""


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst of ``verdicts`` (fail > warn > ok > skipped); skipped for none.

    Example: ``worst([Verdict.OK, Verdict.SKIPPED, Verdict.WARN]) is Verdict.WARN``.
    """
    out = Verdict.SKIPPED
    for v in verdicts:
        if _RANK[v] > _RANK[out]:
            out = v
    return out


def attach_causes(checks: Sequence[CheckResult]) -> list[CheckResult]:
    """Fill ``caused_by`` of failed/warned checks with the failed checks they depend on.

    Example: ``echo.tcp.127.0.0.1`` depends on ``lo.link``; when both fail, the echo gets
    ``caused_by=("lo.link",)`` and its remedy points there.
    """
    failed = {c.id for c in checks if c.verdict is Verdict.FAIL}
    out = []
    for check in checks:
        causes = tuple(d for d in check.depends_on if d in failed and d != check.id)
        if causes and check.verdict in (Verdict.FAIL, Verdict.WARN):
            remedy = f"fix {', '.join(causes)} first" + (
                f"; then: {check.remedy}" if check.remedy else ""
            )
            check = replace(check, caused_by=causes, remedy=remedy)
        out.append(check)
    return out


def rung_verdict(check: CheckResult) -> Verdict:
    """What a check says about its rung: its verdict, except that a failed ``service_level`` check
    (one service's setup, not the stack) only warns.

    Example: a listener on 127.0.0.1 only while ``localhost`` resolves to ``::1`` only fails its own
    check (subject: that service) and leaves the loopback stack rung at warn.
    """
    if check.service_level and check.verdict is Verdict.FAIL:
        return Verdict.WARN
    return check.verdict


def build_rung(rung: int, checks: Sequence[CheckResult]) -> RungResult:
    """Fold checks into a rung: causes attached, verdict = worst :func:`rung_verdict`."""
    linked = attach_causes(checks)
    return RungResult(
        rung=rung,
        name=RUNG_NAMES.get(rung, f"rung {rung}"),
        verdict=worst(rung_verdict(c) for c in linked),
        checks=tuple(linked),
    )


def mark_meaningless(rungs: Sequence[RungResult]) -> list[RungResult]:
    """Mark the rungs above the lowest failed rung as not meaningful.

    Every rung above a failure depends on it: rung 2's echo through the host's addresses also goes
    through ``lo``, and rung 3 needs a working local network. Failures of ``service_level`` checks
    (one listener's setup) do not count.

    Example: rungs (1 fail, 2 ok, 3 fail) -> rung 1 ``invalidates=(2, 3)``, rungs 2 and 3
    ``meaningful=False`` with a reason naming rung 1. ``invalidates`` lists every rung above, also those
    not run this time.
    """
    ordered = sorted(rungs, key=lambda r: r.rung)
    failed = next(
        (
            r
            for r in ordered
            if any(c.verdict is Verdict.FAIL and not c.service_level for c in r.checks)
        ),
        None,
    )
    if failed is None:
        return ordered
    above = tuple(
        range(failed.rung + 1, max(RUNG_NAMES) + 1)
    )  # run or not, they depend on this one
    reason = f"rung {failed.rung} ({failed.name}) failed: results up here are not meaningful until it passes"
    out = []
    for r in ordered:
        if r.rung == failed.rung:
            out.append(replace(r, invalidates=above))
        elif r.rung > failed.rung:
            out.append(replace(r, meaningful=False, not_meaningful_because=reason))
        else:
            out.append(r)
    return out


def findings_of(rungs: Iterable[RungResult], *, subject_prefix: str = "") -> list[Finding]:
    """A finding for every warn or fail check, most severe first.

    Args:
        rungs: judged rungs.
        subject_prefix: prepended to each subject (``netns blue: ``).
    """
    out = []
    for rung in rungs:
        for check in rung.checks:
            severity = check.finding_severity
            if severity is None:
                continue
            out.append(
                Finding(
                    code=check.code or check.id.upper().replace(".", "_"),
                    severity=severity,
                    subject=f"{subject_prefix}{check.subject or check.title}",
                    evidence=check.evidence,
                    remedy=check.remedy,
                )
            )
    out.sort(key=lambda f: -f.severity.rank)
    return out

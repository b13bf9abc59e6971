"""The doctor's verdict plumbing and the whole ladder on recorded facts (healthy host, lo DOWN netns)."""

from __future__ import annotations

from dataclasses import replace

from loopscope.analysis.doctor.ladder import judge
from loopscope.analysis.doctor.verdict import (
    CheckResult,
    RungResult,
    Verdict,
    attach_causes,
    build_rung,
    findings_of,
    mark_meaningless,
    worst,
)
from loopscope.model import Severity


def _c(id_: str, verdict: Verdict, depends_on: tuple[str, ...] = (), rung: int = 1) -> CheckResult:
    return CheckResult(
        id=id_,
        rung=rung,
        title=id_,
        verdict=verdict,
        evidence="e",
        remedy="r",
        depends_on=depends_on,
    )


def test_worst_orders_fail_warn_ok_skipped():
    assert worst([Verdict.OK, Verdict.SKIPPED, Verdict.WARN]) is Verdict.WARN
    assert worst([Verdict.OK, Verdict.FAIL, Verdict.WARN]) is Verdict.FAIL
    assert worst([Verdict.SKIPPED]) is Verdict.SKIPPED
    assert worst([]) is Verdict.SKIPPED


def test_causes_attach_only_to_failed_dependencies():
    out = attach_causes(
        [
            _c("lo.link", Verdict.FAIL),
            _c("echo", Verdict.FAIL, ("lo.link", "lo.routes")),
            _c("mtu", Verdict.OK, ("lo.link",)),
        ]
    )
    assert out[1].caused_by == ("lo.link",) and out[1].remedy.startswith("fix lo.link first")
    assert out[2].caused_by == ()
    assert (
        attach_causes([_c("lo.link", Verdict.OK), _c("echo", Verdict.FAIL, ("lo.link",))])[
            1
        ].caused_by
        == ()
    )


def test_failed_rung_invalidates_the_rungs_above():
    rungs = [
        build_rung(1, [_c("a", Verdict.FAIL)]),
        build_rung(2, [_c("b", Verdict.OK, rung=2)]),
        build_rung(3, [_c("c", Verdict.OK, rung=3)]),
    ]
    out = mark_meaningless(rungs)
    assert out[0].invalidates == (2, 3) and out[0].meaningful
    assert not out[1].meaningful and "rung 1" in out[1].not_meaningful_because
    assert not out[2].meaningful


def test_passing_rungs_stay_meaningful():
    out = mark_meaningless(
        [build_rung(1, [_c("a", Verdict.WARN)]), build_rung(2, [_c("b", Verdict.FAIL, rung=2)])]
    )
    assert out[0].invalidates == () and out[1].meaningful and out[1].invalidates == (3,)


def test_findings_only_for_warn_and_fail_with_default_severities():
    rung = RungResult(
        rung=1,
        name="x",
        verdict=Verdict.FAIL,
        checks=(
            _c("a.b", Verdict.FAIL),
            _c("c", Verdict.WARN),
            _c("d", Verdict.OK),
            _c("e", Verdict.SKIPPED),
            replace(_c("f", Verdict.FAIL), severity=Severity.CRITICAL, code="LO_DOWN"),
        ),
    )
    found = findings_of([rung], subject_prefix="netns blue: ")
    assert [(f.code, f.severity) for f in found] == [
        ("LO_DOWN", Severity.CRITICAL),
        ("A_B", Severity.HIGH),
        ("C", Severity.MEDIUM),
    ]
    assert found[0].subject == "netns blue: f"


def test_healthy_host_passes_every_rung(healthy):
    rungs = judge(healthy)
    assert [r.rung for r in rungs] == [1, 2]
    bad = [
        (c.id, c.verdict, c.evidence)
        for r in rungs
        for c in r.checks
        if c.verdict is not Verdict.OK
    ]
    assert bad == []
    assert not findings_of(rungs)


def test_lo_down_fails_rung1_with_remedy_and_explains_the_rest(lo_down):
    rungs = judge(lo_down)
    rung1 = rungs[0]
    assert rung1.verdict is Verdict.FAIL and rung1.invalidates == (2, 3)
    link = next(c for c in rung1.checks if c.id == "lo.link")
    assert (
        link.verdict is Verdict.FAIL
        and link.code == "LO_DOWN"
        and link.severity is Severity.CRITICAL
    )
    assert link.remedy == "ip -n blue link set lo up"
    echo = next(c for c in rung1.checks if c.id == "echo.tcp.127.0.0.1")
    assert (
        echo.verdict is Verdict.FAIL
        and "lo.link" in echo.caused_by
        and "ENETUNREACH" in echo.evidence
    )
    assert not rungs[1].meaningful
    # an isolated namespace has nothing beyond lo: rung 2 only warns, it does not fail
    assert rungs[1].verdict is Verdict.WARN


def test_external_rung_only_when_gathered(healthy):
    from loopscope.analysis.doctor.facts import ExternalFacts

    ext = ExternalFacts(
        host="127.0.0.1",
        port=9,
        addresses=(healthy.loopback.icmp[0].target,),
        resolve_us=0.0,
        connects=(("127.0.0.1", None, "connect: Connection refused (ECONNREFUSED)"),),
    )
    rungs = judge(replace(healthy, external=ext))
    assert [r.rung for r in rungs] == [1, 2, 3] and rungs[2].verdict is Verdict.FAIL


def test_service_level_failures_warn_their_rung_and_do_not_invalidate_rungs_above():
    svc = replace(_c("resolve.mismatch.8080", Verdict.FAIL), service_level=True)
    out = mark_meaningless([build_rung(1, [svc]), build_rung(2, [_c("b", Verdict.OK, rung=2)])])
    assert out[0].verdict is Verdict.WARN and out[0].invalidates == () and out[1].meaningful
    stack = build_rung(1, [svc, _c("lo.link", Verdict.FAIL)])
    assert stack.verdict is Verdict.FAIL  # a stack fault still fails the rung


def test_service_bound_to_the_other_family_is_its_own_finding_not_a_stack_failure(
    healthy, mk_listener
):
    """localhost resolves to 127.0.0.1 only (the healthy facts' hosts file) and a service listens on
    ::1 only: rung 1 warns, the failure is the service's (subject: it), the stack checks stay ok."""
    snap = replace(healthy.snapshot, sockets=(*healthy.snapshot.sockets, mk_listener("::1", 8443)))
    rungs = judge(replace(healthy, snapshot=snap))
    checks = {c.id: c for r in rungs for c in r.checks}
    assert rungs[0].verdict is Verdict.WARN and rungs[0].invalidates == ()
    assert checks["resolve.mismatch"].verdict is Verdict.OK
    svc = checks["resolve.mismatch.8443"]
    assert svc.verdict is Verdict.FAIL and svc.code == "LOCALHOST_V4_FIRST_LISTENER_V6_ONLY"
    (finding,) = [f for f in findings_of(rungs) if f.code.startswith("LOCALHOST_")]
    assert finding.subject == "owner unknown port 8443/tcp"
    assert finding.severity is Severity.HIGH
    assert [r.rung for r in rungs if not r.meaningful] == []


def test_recorded_lo_down_namespace(recorded_lo_down):
    rungs = judge(recorded_lo_down)
    checks = {c.id: c for r in rungs for c in r.checks}
    assert rungs[0].verdict is Verdict.FAIL and rungs[0].invalidates == (2, 3)
    assert checks["lo.link"].code == "LO_DOWN"
    assert checks["lo.link"].remedy == "ip -n ls-record-doctor link set lo up"
    assert (
        checks["echo.tcp.127.0.0.1"].verdict is Verdict.FAIL
        and "lo.link" in checks["echo.tcp.127.0.0.1"].caused_by
    )
    assert (
        checks["lo.routes"].verdict is Verdict.FAIL
        and "Network is unreachable" in checks["lo.routes"].evidence
    )
    assert checks["icmp.127.0.0.1"].verdict is Verdict.FAIL


def test_recorded_healthy_namespace(recorded_ok):
    rungs = judge(recorded_ok)
    bad = [
        (c.id, c.verdict, c.evidence)
        for r in rungs
        for c in r.checks
        if c.verdict is not Verdict.OK
    ]
    assert bad == []
    checks = {c.id: c for r in rungs for c in r.checks}
    assert checks["net.default_route"].evidence == "default routes: IPv4 via 10.213.9.2 dev rec0"
    assert checks["resolve.mismatch"].data["ports"] == {"8080": [4]}
    assert "echo.tcp.10.213.9.1" in checks

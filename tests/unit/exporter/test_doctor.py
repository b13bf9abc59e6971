"""Doctor rung-1 verdicts in the exporter: gathered for real on this host at most every interval,
exposed as one info series per check with its verdict."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from loopscope.analysis.doctor.verdict import CheckResult, Verdict, build_rung
from loopscope.exporter.doctor import DoctorChecks, NamespaceChecks
from loopscope.exporter.metrics import doctor_families


class _Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_zero_interval_turns_the_checks_off() -> None:
    checks = DoctorChecks(0)
    assert checks.results() == [] and checks.runs == 0 and checks.age_s() is None


@pytest.mark.linux
def test_rung1_runs_once_per_interval_on_this_host() -> None:
    clock = _Clock()
    checks = DoctorChecks(300, clock_s=clock)
    first = checks.results()
    assert checks.runs == 1 and [r.netns for r in first] == ["host"]
    verdicts = {c.id: c.verdict for c in first[0].rung.checks}
    assert verdicts["lo.link"] is Verdict.OK and verdicts["echo.tcp.127.0.0.1"] is Verdict.OK
    clock.now_s += 299
    assert checks.results() is first and checks.runs == 1 and checks.age_s() == 299
    clock.now_s += 1
    checks.results()
    assert checks.runs == 2 and checks.age_s() == 0


def test_families_one_series_per_check_with_its_verdict() -> None:
    rung = build_rung(
        1,
        [
            CheckResult(id="lo.link", rung=1, title="lo", verdict=Verdict.OK, evidence="up"),
            CheckResult(
                id="lo.ipv4",
                rung=1,
                title="127/8",
                verdict=Verdict.FAIL,
                evidence="missing",
                code="LO_NO_IPV4",
            ),
        ],
    )

    class _Fixed(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return doctor_families([NamespaceChecks(netns='blue"\n', rung=rung)], 12.5)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Fixed())
    text = generate_latest(reg).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    key = (
        "loopscope_doctor_check_info",
        (("check", "lo.ipv4"), ("code", "LO_NO_IPV4"), ("netns", 'blue"\n'), ("verdict", "fail")),
    )
    assert samples[key] == 1.0
    assert samples[("loopscope_doctor_age_seconds", ())] == 12.5
    assert sum(1 for k in samples if k[0] == "loopscope_doctor_check_info") == 2

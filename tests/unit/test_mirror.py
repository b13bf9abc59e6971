"""Tests mirror the source: every module of loopscope has its test module at the mirrored path, or says
in COVERED_ELSEWHERE which test covers it.

``src/loopscope/a/b.py`` <-> ``tests/unit/a/test_b.py``; ``backends/linux/x.py`` may also be tested at
``tests/unit/backends/test_x.py`` (and ``backends/linux/bpf/x.py`` at ``tests/unit/backends/bpf/``); a
package whose ``__init__.py`` defines functions or classes <-> ``tests/unit/<parent>/test_<package>.py``.
An ``__init__.py`` that only re-exports is exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import loopscope

SRC = Path(loopscope.__file__).parent
ROOT = SRC.parents[1]
UNIT = ROOT / "tests" / "unit"

# module (relative to src/loopscope) -> the test that covers it instead of a mirrored unit test.
# Live tests run the real thing (sockets on loopback, /proc, netns); CLI modules are covered by the
# live test that runs that command through ``python -m loopscope``.
COVERED_ELSEWHERE: dict[str, str] = {
    "__main__.py": "tests/live/procs.py",  # every live CLI test runs `python -m loopscope`
    # pure analysis and records, tested through the analysis that uses them
    "analysis/doctor/facts.py": "tests/unit/analysis/doctor/test_ladder.py",
    "analysis/doctor/verdict.py": "tests/unit/analysis/doctor/test_ladder.py",
    "analysis/firewall/model.py": "tests/unit/analysis/firewall/test_evaluate.py",
    "analysis/listeners.py": "tests/unit/analysis/test_exposure.py",
    "analysis/stack.py": "tests/unit/analysis/test_talkmap.py",
    "analysis/watch/findings.py": "tests/unit/analysis/watch/test_report.py",
    "analysis/watch/model.py": "tests/unit/analysis/watch/test_report.py",
    "model/events.py": "tests/unit/analysis/watch/test_report.py",
    "model/probe.py": "tests/unit/analysis/probe/test_diagnose.py",
    "model/records.py": "tests/unit/backends/test_sock_diag.py",
    "model/echo.py": "tests/live/test_doctor_probes.py",
    "model/firewall.py": "tests/live/test_doctor_firewall.py",
    "model/routing.py": "tests/unit/backends/test_routes.py",
    "model/sysctls.py": "tests/live/test_doctor_stack.py",
    "render/dot.py": "tests/unit/analysis/test_dot.py",
    "render/fields.py": "tests/unit/watch/test_view.py",
    "render/jsonable.py": "tests/unit/watch/test_view.py",
    "render/views.py": "tests/live/test_scan_live.py",
    # backends: the kernel is the test
    "backends/linux/_fastrec.py": "tests/unit/backends/test_sock_diag_destroy.py",
    "backends/linux/bpf/syscall.py": "tests/unit/backends/bpf/test_sockops.py",
    "backends/linux/icmp.py": "tests/live/test_doctor_probes.py",
    "backends/linux/netns.py": "tests/live/test_doctor_netns.py",
    "backends/portable/psutil_backend.py": "tests/live/test_scan_live.py",
    # the collector package: one test of the whole collector on the recorded fixture
    "collect/collector.py": "tests/unit/test_collect.py",
    "collect/parts.py": "tests/unit/test_collect.py",
    # features: live tests
    "bench/paths.py": "tests/live/test_bench_paths.py",
    "bench/runner.py": "tests/live/test_bench_paths.py",
    "bench/server.py": "tests/live/test_bench_nagle.py",
    "doctor/gather.py": "tests/live/test_doctor_probes.py",
    "doctor/probes.py": "tests/live/test_doctor_probes.py",
    "doctor/render.py": "tests/live/test_doctor_stack.py",
    "doctor/runner.py": "tests/live/test_doctor_netns.py",
    "lab/app.py": "tests/live/test_lab_selfcall.py",
    "lab/calibrate.py": "tests/unit/sim/test_calibrate.py",
    "lab/loadgen.py": "tests/live/test_lab_selfcall.py",
    "lab/runner.py": "tests/live/test_lab_selfcall.py",
    "lab/server.py": "tests/live/test_lab_selfcall.py",
    "probes/connect.py": "tests/live/test_probe_http.py",
    "probes/exposure.py": "tests/unit/probes/test_exposure_pure.py",
    "probes/fingerprint.py": "tests/unit/probes/test_fingerprint_classify.py",
    "probes/run.py": "tests/live/test_probe_diagnosis.py",
    "sim/engine.py": "tests/unit/sim/test_validation.py",
    "sim/model.py": "tests/unit/sim/test_validation.py",
    "sim/result.py": "tests/unit/sim/test_validation.py",
    "sim/sampling.py": "tests/unit/sim/test_validation.py",
    "testing/factories.py": "tests/unit/analysis/test_talkmap.py",
    "watch/session.py": "tests/live/test_watch_selfcall.py",
    "watch/snapshots.py": "tests/live/test_watch_snapshots.py",
    "analysis/traces/findings.py": "tests/unit/analysis/traces/test_report.py",
    "analysis/traces/stats.py": "tests/unit/analysis/traces/test_report.py",
    "analysis/traces/walk.py": "tests/unit/analysis/traces/test_report.py",
    "model/spans.py": "tests/unit/analysis/traces/test_report.py",
    "traces/attributes.py": "tests/unit/traces/test_read.py",
    "traces/jaeger.py": "tests/unit/traces/test_read.py",
    "traces/otlp.py": "tests/unit/traces/test_read.py",
    "traces/zipkin.py": "tests/unit/traces/test_read.py",
    "traces/listen.py": "tests/live/test_traces_app.py",
    "traces/view.py": "tests/live/test_traces_app.py",
    # front-ends: the live test that runs the command
    "cli/exporter.py": "tests/live/test_exporter_cli.py",
    "cli/traces.py": "tests/live/test_traces_app.py",
    "cli/trace.py": "tests/live/test_traces_run.py",
    "cli/bench.py": "tests/live/test_bench_cli.py",
    "cli/listing.py": "tests/unit/cli/test_fastpath.py",
    "cli/doctor.py": "tests/live/test_doctor_stack.py",
    "cli/lab.py": "tests/live/test_lab_selfcall.py",
    "cli/map.py": "tests/live/test_scan_live.py",
    "cli/options.py": "tests/live/test_netns_live.py",
    "cli/ports.py": "tests/live/test_ports_services.py",
    "cli/probe.py": "tests/live/test_probe_cli.py",
    "cli/scan.py": "tests/live/test_scan_live.py",
    "cli/simulate.py": "tests/unit/sim/test_cli_simulate.py",
    "cli/watch.py": "tests/live/test_watch_cli.py",
}


def _needs_test(path: Path) -> bool:
    if path.name != "__init__.py":
        return True
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for node in tree.body
    )


def mirrored_tests(rel: Path) -> list[Path]:
    """Where the unit test of ``src/loopscope/<rel>`` may live."""
    if rel.name == "__init__.py":
        return [UNIT.joinpath(*rel.parts[:-2], f"test_{rel.parts[-2]}.py")]
    out = [UNIT.joinpath(*rel.parts[:-1], f"test_{rel.name}")]
    if rel.parts[:2] == ("backends", "linux"):
        out.append(UNIT.joinpath("backends", *rel.parts[2:-1], f"test_{rel.name}"))
    return out


def modules() -> list[Path]:
    return sorted(
        p.relative_to(SRC)
        for p in SRC.rglob("*.py")
        if "__pycache__" not in p.parts and _needs_test(p)
    )


def untested() -> list[str]:
    """Modules with neither a mirrored test nor a COVERED_ELSEWHERE entry."""
    return [
        str(rel)
        for rel in modules()
        if not any(t.exists() for t in mirrored_tests(rel)) and str(rel) not in COVERED_ELSEWHERE
    ]


def test_every_module_has_a_test() -> None:
    missing = untested()
    assert not missing, (
        "add tests/unit/<same path>/test_<module>.py, or name the test that covers it in"
        " COVERED_ELSEWHERE (tests/unit/test_mirror.py):\n"
        + "\n".join(
            f"{m} -> {[str(t.relative_to(ROOT)) for t in mirrored_tests(Path(m))]}" for m in missing
        )
    )


def test_covered_elsewhere_is_true() -> None:
    known = {str(rel) for rel in modules()}
    gone = [m for m in COVERED_ELSEWHERE if m not in known]
    assert not gone, f"COVERED_ELSEWHERE names modules that no longer exist: {gone}"
    absent = {m: t for m, t in COVERED_ELSEWHERE.items() if not (ROOT / t).exists()}
    assert not absent, f"COVERED_ELSEWHERE names tests that do not exist: {absent}"
    mirrored = [m for m in COVERED_ELSEWHERE if any(t.exists() for t in mirrored_tests(Path(m)))]
    assert not mirrored, (
        f"these now have their mirrored test; drop them from COVERED_ELSEWHERE: {mirrored}"
    )


def test_mirror_rule() -> None:
    assert mirrored_tests(Path("backends/linux/routes.py")) == [
        UNIT / "backends" / "linux" / "test_routes.py",
        UNIT / "backends" / "test_routes.py",
    ]
    assert mirrored_tests(Path("analysis/watch/report.py")) == [
        UNIT / "analysis" / "watch" / "test_report.py"
    ]
    assert mirrored_tests(Path("collect/__init__.py")) == [UNIT / "test_collect.py"]

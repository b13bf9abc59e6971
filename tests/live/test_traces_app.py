"""A real Flask app under gunicorn with OpenTelemetry's own auto-instrumentation, exporting over OTLP/HTTP to
``loopscope traces --listen``: exact counts and amplification factors per endpoint."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from apps.otel_run import ENDPOINTS, drive, instrument_bin, run_services

ROUNDS = 20

pytestmark = [
    pytest.mark.linux,
    pytest.mark.skipif(
        instrument_bin() is None, reason="needs loopscope[test] (opentelemetry-distro)"
    ),
]


def test_self_calls_per_endpoint_from_a_real_instrumented_app():
    cli = subprocess.Popen(
        [sys.executable, "-m", "loopscope", "traces", "--listen", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert cli.stderr is not None
        banner = cli.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/v1/traces", banner).group(1))
        with run_services(port) as app:
            drive(app["ports"]["shop"], ROUNDS)
            time.sleep(1.0)  # one batch delay (200 ms) and then some; shutdown flushes the rest
        time.sleep(0.5)
        cli.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(5)
    assert cli.returncode == 1, err  # high findings: SELF_CALL_ON_HOT_PATH
    doc = json.loads(out)
    assert doc["source"]["receiver"]["dropped_spans"] == 0
    assert doc["source"]["receiver"]["rejected_requests"] == 0
    eps = {(e["service"], e["endpoint"]): e for e in doc["endpoints"]}
    got = {
        ep: (eps[("shop", f"GET {ep}")]["requests"], eps[("shop", f"GET {ep}")]["self_calls"])
        for ep in ENDPOINTS
    }
    assert got == {
        "/seq": (ROUNDS, 2 * ROUNDS),
        "/fan": (ROUNDS, 3 * ROUNDS),
        "/none": (ROUNDS, 0),
        "/other": (ROUNDS, 0),
    }
    assert [eps[("shop", f"GET {ep}")]["amplification"] for ep in ENDPOINTS] == [2.0, 3.0, 0.0, 0.0]
    assert eps[("shop", "GET /seq")]["call_summary"] == "GET /seq -> GET /price x1, GET /stock x1"
    assert (
        eps[("shop", "GET /fan")]["call_summary"] == "GET /fan -> GET /a x1, GET /b x1, GET /c x1"
    )
    assert eps[("shop", "GET /other")]["callees"] == [["backend", ROUNDS]]
    assert eps[("backend", "GET /x")]["requests"] == ROUNDS + 1  # + the readiness probe
    # the fan-out runs in parallel: its waiting share is below the sum of its calls over its duration
    fan = eps[("shop", "GET /fan")]
    assert 0 < fan["waiting_share"] < 1
    assert doc["gaps"] == []
    hot = {f["subject"] for f in doc["findings"] if f["code"] == "SELF_CALL_ON_HOT_PATH"}
    assert hot == {"shop GET /seq", "shop GET /fan"}
    edges = {(e["client"], e["server"]): e["calls"] for e in doc["edges"]}
    assert edges == {("shop", "shop"): 5 * ROUNDS, ("shop", "backend"): ROUNDS}


def test_head_sampling_at_10_percent_keeps_the_factors_and_scales_the_totals():
    from loopscope.analysis.traces import summarize_traces
    from loopscope.traces.receiver import OtlpReceiver

    rounds = 60
    sampler = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    with OtlpReceiver(port=0) as rx:
        with run_services(rx.port, extra_env=sampler) as app:
            drive(app["ports"]["shop"], rounds)
            time.sleep(1.0)
        time.sleep(0.3)
        spans = rx.spans()
    report = summarize_traces(spans, sample_ratio=0.1)
    eps = {e.endpoint: e for e in report.endpoints if e.service == "shop"}
    kept = sum(eps[f"GET {ep}"].requests for ep in ENDPOINTS if f"GET {ep}" in eps)
    assert (
        0 < kept < 4 * rounds
    )  # about 24 of 240; the exact number depends on the random trace ids
    for ep, factor in (("/seq", 2.0), ("/fan", 3.0)):
        if f"GET {ep}" in eps:  # parent-based sampling keeps whole traces: the factor is exact
            assert eps[f"GET {ep}"].amplification == factor
            assert eps[f"GET {ep}"].estimated_requests == eps[f"GET {ep}"].requests / 0.1
    whats = [g.what for g in report.gaps]
    assert whats == ["totals under head sampling"]  # no broken traces, only the scaling caveat

"""A short real lab run on loopback: gunicorn gthread / waitress with a fixed thread pool, an open-loop
load, self-calls against in-process calls at the same rate. Servers are always stopped."""

import json
import os
import time

import pytest
from typer.testing import CliRunner

from loopscope.cli.app import app
from loopscope.errors import UsageError
from loopscope.lab.loadgen import run_load
from loopscope.lab.runner import Calibration, LabConfig, calibrate, run_lab
from loopscope.lab.server import LabServer

pytestmark = [pytest.mark.linux]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_selfcall_p99_above_inprocess_at_same_rate():
    # N=4 threads, 20 ms + 20 ms: in-process capacity ~95/s, self-call capacity ~60/s.
    cfg = LabConfig(
        designs=("selfcall", "inprocess"),
        rates_per_s=(70.0,),
        threads=4,
        work_ms=20,
        child_ms=20,
        duration_s=2.5,
        request_timeout_s=1.5,
        call_timeout_ms=700,
    )
    cal = Calibration(hop_s=0.0008, work_s=0.021, child_s=0.021)
    curves = {c.design: c for c in run_lab(cfg, cal)}
    self_pt, inproc_pt = curves["selfcall"].points[0], curves["inprocess"].points[0]
    assert inproc_pt.measured.sent == self_pt.measured.sent == 175
    assert inproc_pt.measured.ok >= 0.97 * inproc_pt.measured.sent
    assert self_pt.measured.p99_all_s is not None and inproc_pt.measured.p99_all_s is not None
    assert self_pt.measured.p99_all_s > 2 * inproc_pt.measured.p99_all_s
    # past the knee the shared pool collapses: goodput well under the offered rate
    assert self_pt.measured.goodput_per_s < 0.5 * self_pt.rate_per_s
    # and the model, fed the same scenario, predicts the same side of the knee
    assert self_pt.simulated.throughput_per_s < 0.5 * self_pt.rate_per_s
    assert inproc_pt.simulated.throughput_per_s > 0.95 * inproc_pt.rate_per_s


@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
def test_server_answers_and_is_stopped(kind):
    with LabServer(kind=kind, threads=2) as srv:
        pid = srv._proc.pid
        res = run_load(
            srv.hostport,
            "/selfcall?work_ms=2&child_ms=2&fanout=2",
            rate_per_s=40,
            duration_s=0.5,
            timeout_s=2.0,
        )
        assert res.sent == 20 and res.ok == 20
        assert res.latency.p50_s is not None and res.latency.p50_s >= 0.004
        assert _alive(pid)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_pool_design_uses_second_server():
    cfg = LabConfig(
        designs=("pool",),
        rates_per_s=(30.0,),
        threads=2,
        pool_threads=2,
        work_ms=5,
        child_ms=5,
        duration_s=1.0,
    )
    cal = calibrate(cfg)
    assert 0 < cal.hop_s < 0.05 and 0.004 < cal.work_s < 0.05
    (curve,) = run_lab(cfg, cal)
    assert curve.points[0].measured.ok == 30


def test_loadgen_refuses_non_loopback():
    with pytest.raises(UsageError):
        run_load("192.0.2.1:80", "/", rate_per_s=1, duration_s=1)


def test_lab_cli_json_and_plot(tmp_path):
    out = tmp_path / "lab.svg"
    res = CliRunner().invoke(
        app,
        [
            "lab",
            "--compare",
            "inprocess",
            "--rates",
            "20",
            "--duration",
            "1",
            "--threads",
            "2",
            "--work-ms",
            "5",
            "--child-ms",
            "5",
            "--json",
            "--plot",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    (curve,) = doc["curves"]
    assert curve["points"][0]["measured"]["ok"] == 20
    assert b"<svg" in out.read_bytes()[:2000]

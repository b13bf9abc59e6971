"""``loopscope bench`` end to end in a subprocess: table, JSON, plot, errors, --compare."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.linux
SMALL = ["--count", "40", "--warmup", "2", "--sizes", "1,1k", "--throughput-s", "0.1"]


def _run(*args, timeout=60):
    """The real CLI in a subprocess (entry point, interpreter start-up, exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "loopscope", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _invoke(*args):
    """The same typer app in-process (faster: no interpreter start-up, matplotlib imported once)."""
    from typer.testing import CliRunner

    from loopscope.cli.app import app

    return CliRunner().invoke(app, ["bench", *args])


def test_json_document_and_plot(tmp_path):
    png = tmp_path / "lat.png"
    plot = ["--plot", str(png)] if importlib.util.find_spec("matplotlib") else []
    r = _invoke("--paths", "call,tcp4,udp4,http-keepalive", *SMALL, "--json", *plot)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] >= 1 and doc["command"] == "bench"
    cells = doc["report"]["cells"]
    # compiled engine (a C compiler here): HTTP stays Python and gets a Python call to compare with
    calls = ("call", "call") if doc["report"]["engine"] == "native" else ("call",)
    assert [(c["path"], c["size_bytes"]) for c in cells] == [
        (p, s) for p in (*calls, "tcp4", "udp4", "http-keepalive") for s in (1, 1024)
    ]
    for c in cells:
        assert c["summary"]["count"] == 40
        assert c["summary"]["p50_ns"] <= c["summary"]["p99_ns"] <= c["summary"]["p999_ns"]
        assert c["ratio_to_call"] is not None
    assert [t["path"] for t in doc["report"]["throughput"]] == ["tcp4"]
    assert doc["findings"] == [] and doc["compare"] == []
    assert r.stderr == ""  # no progress output with --json
    if plot:
        assert doc["plot"] == str(png)
        assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_from_the_real_entry_point():
    r = _run("--paths", "call,unix,tcp6", *SMALL, "--pin", "same")
    assert r.returncode == 0, r.stderr
    assert "Round trip (pin same" in r.stdout and "AF_UNIX stream" in r.stdout
    assert "Stream throughput" in r.stdout
    assert all(len(line) <= 100 for line in r.stdout.splitlines())


@pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="needs cc")
def test_native_engine_from_the_real_entry_point():
    r = _run("--engine", "native", "--paths", "tcp4", "--sizes", "64", "--count", "200", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)["report"]
    assert report["engine"] == report["server_engine"] == "native"
    assert report["config"]["engine"] == "native" and report["engine_reason"] is None
    (cell,) = report["cells"]
    assert cell["engine"] == "native" and cell["summary"]["count"] == 200
    assert 0 < cell["summary"]["min_ns"] <= cell["summary"]["p50_ns"]
    assert report["native_timer_overhead_ns"] is not None


@pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="needs cc")
def test_python_paths_beside_compiled_ones_are_compared_with_a_python_call():
    args = ("--engine", "native", "--paths", "call,tcp4,http-keepalive", "--sizes", "64")
    r = _run(*args, "--count", "200", "--json")
    assert r.returncode == 0, r.stderr
    cells = {(c["path"], c["engine"]): c for c in json.loads(r.stdout)["report"]["cells"]}
    assert set(cells) == {
        ("call", "native"),
        ("call", "python"),
        ("tcp4", "native"),
        ("http-keepalive", "python"),
    }
    http, call = cells[("http-keepalive", "python")], cells[("call", "python")]
    assert call["label"] == "in-process (python)"
    assert http["ratio_to_call"] == http["summary"]["p50_ns"] / call["summary"]["p50_ns"]
    tcp, c_call = cells[("tcp4", "native")], cells[("call", "native")]
    assert tcp["ratio_to_call"] == tcp["summary"]["p50_ns"] / c_call["summary"]["p50_ns"]
    table = _run(*args, "--count", "50", "--no-throughput").stdout
    assert "in-process (python)" in table and "…" not in table  # nothing cut at 80 columns
    assert all(len(line) <= 80 for line in table.splitlines())
    assert "x call: each row against the in-process call of its own engine" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "1,zero"], "bad size"),
        (["--paths", "tcp5"], "unknown path"),
        (["--count", "0"], "--count"),
        (["--sizes", "128m"], "out of range"),
        (["--plot", "/tmp/x.gif", "--paths", "call", "--count", "5"], ".png or .svg"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_running(args, message):
    r = _invoke(*args)
    assert r.exit_code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.skipif(
    not (shutil.which("sockperf") and shutil.which("iperf3")),
    reason="needs sockperf and iperf3 (Debian packages)",
)
def test_compare_runs_sockperf_and_iperf3_on_the_same_path():
    r = _run(
        "--paths",
        "tcp4",
        "--count",
        "50",
        "--sizes",
        "14",
        "--no-throughput",
        "--compare",
        "--compare-s",
        "1",
        "--pin",
        "same",
        "--json",
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    got = {(c["metric"], c["tool"]): c for c in doc["compare"]}
    assert set(got) == {
        ("tcp_rr_p50_us", "sockperf"),
        ("tcp_rr_p99_us", "sockperf"),
        ("tcp_stream_bytes_per_s", "iperf3"),
    }
    rr = got[("tcp_rr_p50_us", "sockperf")]
    assert 1 < rr["tool_value"] < 10_000 and 0.2 < rr["ratio"] < 5
    st = got[("tcp_stream_bytes_per_s", "iperf3")]
    assert st["tool_value"] > 1e7 and 0.1 < st["ratio"] < 10
    assert any("netperf" in n for n in doc["compare_notes"])

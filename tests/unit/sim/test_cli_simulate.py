"""``loopscope simulate``: table, JSON, exit codes, plot, one-line errors."""

import json

from typer.testing import CliRunner

from loopscope.cli.app import app

runner = CliRunner()


def test_simulate_json_finds_selfcall_deadlock():
    res = runner.invoke(
        app,
        [
            "simulate",
            "--design",
            "selfcall,inprocess",
            "--rate",
            "150",
            "--requests",
            "3000",
            "--json",
        ],
    )
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    assert doc["schema_version"]
    codes = {f["code"] for f in doc["findings"]}
    assert "STARVATION_DEADLOCK" in codes
    curves = {c["design"]: c for c in doc["curves"]}
    assert curves["selfcall"]["results"][0]["deadlock_episodes"] > 0
    assert curves["inprocess"]["results"][0]["deadlock_episodes"] == 0
    assert curves["inprocess"]["results"][0]["ok"] == 3000


def test_simulate_table_and_fail_on_never():
    res = runner.invoke(
        app,
        [
            "simulate",
            "--design",
            "inprocess,pool",
            "--rate",
            "50",
            "--requests",
            "2000",
            "--fail-on",
            "never",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "inprocess" in res.output and "p99 ms" in res.output
    assert max(len(line) for line in res.output.splitlines()) <= 100


def test_simulate_sweep_plot(tmp_path):
    out = tmp_path / "sweep.png"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--sweep",
            "lambda",
            "--design",
            "selfcall,inprocess",
            "--instances",
            "1,2",
            "--rates",
            "50,150,400",
            "--requests",
            "2000",
            "--plot",
            str(out),
            "--fail-on",
            "never",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "knee of selfcall with M=1" in res.output
    assert out.stat().st_size > 5000


def test_simulate_bad_input_is_one_line():
    res = runner.invoke(app, ["simulate", "--design", "bogus"])
    assert res.exit_code == 2
    assert "unknown design" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["simulate", "--sweep", "workers"])
    assert res.exit_code == 2


def test_simulate_calibrate_from_bench_file(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "paths": [
                    {"path": "tcp 127.0.0.1", "p50_us": 13.0},
                    {"path": "http/1.1 new connection", "p50_us": 380.0},
                ],
            }
        )
    )
    res = runner.invoke(
        app,
        [
            "simulate",
            "--design",
            "selfcall",
            "--rate",
            "10",
            "--requests",
            "500",
            "--calibrate",
            str(bench),
            "--json",
            "--fail-on",
            "never",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert abs(doc["hop_s"] - 380e-6) < 1e-12
    assert "bench file" in doc["hop_source"]

"""``loopscope traces`` through typer's CliRunner on the recorded fixtures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from loopscope.cli.app import build_app

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def _run(*args):
    return runner.invoke(build_app(["traces"]), ["traces", *args])


def test_table_names_endpoints_and_exits_1_on_high_findings():
    result = _run(str(FIXTURES / "selfcall.otlp.jsonl"))
    assert result.exit_code == 1, result.output
    assert "GET /seq -> GET /price x1, GET /stock x1" in result.output
    assert "SELF_CALL_ON_HOT_PATH" in result.output


def test_json_has_schema_version_and_factors():
    result = _run(str(FIXTURES / "selfcall.zipkin.json"), "--json", "--fail-on", "never")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema_version"] >= 1 and doc["command"] == "traces"
    amp = {e["endpoint"]: e["amplification"] for e in doc["endpoints"] if e["service"] == "shop"}
    assert amp == {
        "GET /seq": 2.0,
        "GET /fan": 3.0,
        "GET /none": 0.0,
        "GET /other": 0.0,
        "GET /x": 0.0,
    }
    assert {f["code"] for f in doc["findings"]} == {"SELF_CALL", "SELF_CALL_ON_HOT_PATH"}


def test_dot_graph():
    result = _run(str(FIXTURES / "selfcall.otlp.jsonl"), "--dot", "--fail-on", "never")
    assert '"shop" -> "shop" [label="x25", color=red' in result.output
    assert '"shop" -> "backend" [label="x5"]' in result.output


def test_usage_errors_exit_2(tmp_path):
    assert _run().exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text("nope")
    assert _run(str(bad)).exit_code == 2
    assert _run(str(FIXTURES / "selfcall.otlp.jsonl"), "--sample-ratio", "0").exit_code == 2

"""Live: every command's ``--json`` document, from a real run with tiny parameters, validates against
the JSON Schema shipped in the package (``loopscope/schemas/<command>.json``, draft 2020-12); and the
schemas are strict enough to reject what they should (missing keys, unknown verdicts, the old scope
value ``host``).

Runs against a Python HTTP server on 127.0.0.1 with one client connection held open, so ``map``,
``scan``, ``ports`` and ``probe`` have a listener, a connection and a self-call to describe.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from procs import run_loopscope
from servers import python_http_server

pytestmark = [pytest.mark.linux]
jsonschema = pytest.importorskip("jsonschema", reason="pip install 'loopscope[test]'")

COMMANDS = [
    "scan",
    "ports",
    "map",
    "doctor",
    "probe",
    "watch",
    "bench",
    "simulate",
    "lab",
    "traces",
]
TRACES = Path(__file__).parents[1] / "unit" / "traces" / "fixtures" / "selfcall.otlp.jsonl"


def errors(command: str, doc: dict) -> list[str]:
    from jsonschemas import schema_errors

    return schema_errors(command, doc)


@pytest.fixture(scope="module")
def http():
    with python_http_server(bind="127.0.0.1") as srv:
        client = socket.create_connection(("127.0.0.1", srv.port))
        try:
            yield srv
        finally:
            client.close()


def _traffic(port: int, delay_s: float, n: int) -> threading.Thread:
    def run() -> None:
        time.sleep(delay_s)
        for _ in range(n):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _args(command: str, port: int) -> list[str]:
    return {
        "scan": ["scan"],
        "ports": ["ports", "--fingerprint", "--port", str(port)],
        "map": ["map"],
        "doctor": ["doctor", "--rung", "1", "--external", f"127.0.0.1:{port}"],
        "probe": ["probe", f":{port}", "--count", "2"],
        "watch": ["watch", "--duration", "2", "--port", str(port)],
        "bench": "bench --paths call,tcp4 --count 40 --warmup 2 --sizes 1 --throughput-s 0.1".split(),
        "simulate": "simulate --design selfcall,inprocess --rate 150 --requests 3000".split(),
        "lab": "lab --compare inprocess --rates 20 --duration 1 --threads 2 --work-ms 5 --child-ms 5".split(),
        "traces": ["traces", str(TRACES)],
    }[command]


@pytest.mark.parametrize("command", COMMANDS)
def test_real_output_validates(command, http):
    if command == "lab" and importlib.util.find_spec("gunicorn") is None:
        pytest.skip("lab needs loopscope[lab]")
    if command == "simulate" and importlib.util.find_spec("numpy") is None:
        pytest.skip("simulate needs loopscope[sim]")
    traffic = _traffic(http.port, 1.0, 5) if command == "watch" else None
    result = run_loopscope(
        *_args(command, http.port), "--json", "--fail-on", "never", timeout_s=120
    )
    if traffic is not None:
        traffic.join(10)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["command"] == command
    assert errors(command, doc) == []
    if command == "ports":  # the listener is there and judged
        (row,) = doc["listeners"]
        assert row["port"] == http.port and row["scope"] == "loopback" and row["verdict"]


def test_exporter_has_no_json_and_every_other_command_a_schema():
    from jsonschemas import shipped

    # trace's document is validated where a traced app runs (tests/live/test_traces_run.py)
    assert shipped() == sorted([*COMMANDS, "trace"])
    help_text = subprocess.run(
        [sys.executable, "-m", "loopscope", "exporter", "--help"], capture_output=True, text=True
    ).stdout
    assert "--json" not in help_text


FINDING = {
    "code": "EXPOSED_SENSITIVE_SERVICE",
    "severity": "high",
    "subject": "redis-server 0.0.0.0:6379/tcp",
    "evidence": "e",
    "remedy": "r",
    "netns": {"dev": 4, "ino": 4026531840},
}
LISTENER = {
    "proto": "tcp",
    "family": "inet",
    "address": "0.0.0.0",
    "port": 6379,
    "scope": "wildcard",
    "reach": "all IPv4 addresses",
    "v6only": None,
    "accept_queue": 0,
    "backlog": 511,
    "uid": 0,
    "inode": 1,
    "netns": "host",
    "netns_id": {"dev": 4, "ino": 4026531840},
    "processes": [],
    "verdict": "high EXPOSED",
}
PORTS = {
    "schema_version": 1,
    "command": "ports",
    "netns": [],
    "listeners": [LISTENER],
    "findings": [FINDING],
    "gaps": [],
}


def _with(path: list, value: object) -> dict:
    doc = copy.deepcopy(PORTS)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def test_schemas_reject_what_they_should():
    assert errors("ports", PORTS) == []
    for path, value in [
        (["listeners", 0, "verdict"], "fine"),  # not ok / unknown / '<severity> <CODE>'
        (["listeners", 0, "verdict"], KeyError),
        (["listeners", 0, "scope"], "host"),  # renamed own-address
        (["listeners", 0, "port"], "6379"),
        (["findings", 0, "severity"], "severe"),
        (["findings", 0, "code"], "exposed"),
        (["command"], "scan"),
        (["gaps"], KeyError),
    ]:
        assert errors("ports", _with(path, value)), (path, value)
    for verdict in ("ok", "unknown", "critical EXPOSED", "low ONE-FAMILY"):
        assert errors("ports", _with(["listeners", 0, "verdict"], verdict)) == []
    doctor = {
        "schema_version": 1,
        "command": "doctor",
        "options": {},
        "verdict": "broken",
        "namespaces": [],
        "findings": [],
        "gaps": [],
    }
    assert errors("doctor", doctor) and not errors("doctor", {**doctor, "verdict": "warn"})

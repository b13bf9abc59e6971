"""doctor --port / --pid: the service checks look only at the chosen sockets; the stack checks stay."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.linux

ENV = {k: v for k, v in os.environ.items() if k != "COLUMNS"}


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopscope", "doctor", "--rung", "1", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )


def _checks(doc: dict) -> dict[str, dict]:
    (ns,) = doc["namespaces"]
    return {c["id"]: c for r in ns["rungs"] for c in r["checks"]}


@pytest.fixture
def two_listeners():
    a, b = socket.socket(), socket.socket()
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.listen(8)
    yield a.getsockname()[1], b.getsockname()[1]
    a.close()
    b.close()


def test_port_filter_narrows_the_service_checks(two_listeners):
    port_a, _port_b = two_listeners
    whole = _doctor("--fail-on", "never")
    narrowed = _doctor("--port", str(port_a), "--fail-on", "never")
    assert whole.returncode == 0 and narrowed.returncode == 0, narrowed.stderr
    all_checks, one = _checks(json.loads(whole.stdout)), _checks(json.loads(narrowed.stdout))
    # the stack checks are the same rows; the accept-queue check counts one listener, not all
    assert set(all_checks) == set(one) | {
        k for k in all_checks if k.startswith("resolve.mismatch.")
    }
    assert "1 TCP listeners" in one["ports.somaxconn"]["evidence"], one["ports.somaxconn"][
        "evidence"
    ]
    assert "1 TCP listeners" not in all_checks["ports.somaxconn"]["evidence"]
    assert json.loads(narrowed.stdout)["options"]["ports"] == [port_a]


def test_pid_filter_keeps_this_process_listeners(two_listeners):
    out = _doctor("--pid", str(os.getpid()), "--fail-on", "never")
    assert out.returncode == 0, out.stderr
    evidence = _checks(json.loads(out.stdout))["ports.somaxconn"]["evidence"]
    assert "2 TCP listeners" in evidence, evidence


def test_port_nobody_uses_is_a_one_line_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, not listening, not connected: no socket in the table
    port = s.getsockname()[1]
    s.close()
    out = _doctor("--port", str(port))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().endswith(f"no socket on port {port} in the namespaces examined")

"""``loopscope trace -- gunicorn ...``: the real Flask app under opentelemetry-instrument, its spans received
and the kernel watched at the same time; the kernel's self-call connections beside the self-call spans."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from apps.otel_run import ENDPOINTS, drive, instrument_bin

ROUNDS = 10
APPS = Path(__file__).parent / "apps"

pytestmark = [
    pytest.mark.linux,
    pytest.mark.skipif(
        instrument_bin() is None, reason="needs loopscope[test] (opentelemetry-distro)"
    ),
]


class _Backend(BaseHTTPRequestHandler):
    """A second local service, not instrumented: ``/other`` calls it."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _wait_up(port: int, timeout_s: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/none", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _run(*flags: str) -> tuple[dict, int, str]:
    """``loopscope trace --json -- gunicorn -b 127.0.0.1:0 ...``: gunicorn binds its own listener (so its
    processes are the app's only owners), the port is read from its log, the load driven, then SIGTERM."""
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    env = dict(os.environ, OTHER_URL=f"http://127.0.0.1:{backend.server_address[1]}")
    env.pop("SELF_URL", None)  # the app calls the URL its requests came in on
    cmd = [sys.executable, "-m", "loopscope", "trace", "--json", "--service-name", "shop", *flags]
    cmd += ["--", sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "-w", "1"]
    cmd += ["-k", "gthread", "--threads", "8", "--log-level", "info", "otel_selfcall:app"]
    cli = subprocess.Popen(
        cmd, cwd=APPS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    err_lines: list[str] = []
    try:
        assert cli.stderr is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = cli.stderr.readline()
            if not line:
                break
            err_lines.append(line)
            if m := re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line):
                port = int(m.group(1))
        assert port is not None, "".join(err_lines)
        drain = threading.Thread(target=lambda: err_lines.extend(cli.stderr), daemon=True)
        drain.start()
        _wait_up(port)
        drive(port, ROUNDS)
        # the app's listener owners come from watch's full reads (every 1 s, stretched to 20x their
        # duration on a busy host): let one happen while gunicorn still runs
        time.sleep(3.0)
        cli.send_signal(
            signal.SIGTERM
        )  # forwarded to gunicorn's process group; it flushes and exits
        out = cli.stdout.read() if cli.stdout else ""
        cli.wait(60)
        drain.join(5)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(5)
        backend.shutdown()
        backend.server_close()
    err = "".join(err_lines)
    assert out, err
    return json.loads(out), port, err


def _check_trace_side(doc: dict) -> None:
    from jsonschemas import schema_errors

    assert doc["command"] == "trace" and schema_errors("trace", doc) == []
    assert schema_errors("trace", {**doc, "kernel": {"rows": []}})  # the schema can fail
    eps = {e["endpoint"]: e for e in doc["endpoints"] if e["service"] == "shop"}
    assert {
        ep: (eps[f"GET {ep}"]["requests"], eps[f"GET {ep}"]["self_calls"]) for ep in ENDPOINTS
    } == {
        "/seq": (ROUNDS, 2 * ROUNDS),
        "/fan": (ROUNDS, 3 * ROUNDS),
        "/none": (ROUNDS + eps["GET /none"]["requests"] - ROUNDS, 0),  # + readiness probes
        "/other": (ROUNDS, 0),
    }
    assert doc["source"]["stopped_by"] == "SIGTERM"
    assert doc["source"]["receiver"]["dropped_spans"] == 0


@pytest.mark.root
def test_kernel_self_connections_agree_with_self_call_spans_with_ebpf():
    if os.geteuid() != 0:
        pytest.skip("eBPF needs root")
    doc, port, _err = _run()
    _check_trace_side(doc)
    kernel = doc["kernel"]
    if "ebpf_sockops" not in kernel["sources"]:
        pytest.skip(f"eBPF unavailable here: {[g for g in doc['gaps'] if 'ebpf' in g['what']]}")
    assert kernel["client_pid_source"] is True
    (row,) = [r for r in kernel["rows"] if r["service"] == "shop"]
    assert port in row["ports"]
    # urllib opens one connection per request: the kernel's count is the span count, exactly
    assert row["kernel_self_connections"] == row["trace_self_calls"] == 5 * ROUNDS, row
    assert row["agree"] is True
    assert row["kernel_outbound_connections"] == ROUNDS  # /other -> the backend (receiver excepted)
    assert row["trace_other_calls"] == ROUNDS
    assert not [f for f in doc["findings"] if f["code"] == "TRACE_KERNEL_MISMATCH"]


def test_without_ebpf_the_report_says_which_source_answered():
    doc, _port, _err = _run("--no-ebpf")
    _check_trace_side(doc)
    kernel = doc["kernel"]
    assert "ebpf_sockops" not in kernel["sources"]
    assert kernel["client_pid_source"] is False
    assert "snapshots" in kernel["sources"]
    (row,) = [r for r in kernel["rows"] if r["service"] == "shop"]
    assert row["trace_self_calls"] == 5 * ROUNDS
    if not row["agree"]:  # short-lived self-connections without a client pid: reported, not hidden
        assert "without eBPF" in row["cause"]
        mismatch = [f for f in doc["findings"] if f["code"] == "TRACE_KERNEL_MISMATCH"]
        assert [f["subject"] for f in mismatch] == ["shop"]
        assert any("kernel vs trace" in g["what"] for g in doc["gaps"])

"""Run the self-call Flask app (``otel_selfcall.py``) as two services under gunicorn with OpenTelemetry's
own auto-instrumentation, exporting to a loopscope receiver; drive a known load.

``python tests/live/apps/otel_run.py`` records the parser fixtures in ``tests/unit/traces/fixtures/``:
``selfcall.otlp.jsonl`` (each OTLP/HTTP protobuf body the official exporter sent, re-encoded as OTLP/JSON,
one request per line like the Collector's file exporter) and ``selfcall.zipkin.json`` (what the official
``zipkin_json`` exporter sent, the same spans).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ENDPOINTS = ("/seq", "/fan", "/none", "/other")
SPANS_PER_ROUND = 5 + 7 + 1 + 3  # seq: 1+2+2, fan: 1+3+3, none: 1, other: 1+1+1 (backend)


def instrument_bin() -> str | None:
    """Path of ``opentelemetry-instrument`` next to this Python, or on PATH."""
    beside = Path(sys.executable).with_name("opentelemetry-instrument")
    return str(beside) if beside.exists() else shutil.which("opentelemetry-instrument")


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    s.set_inheritable(True)
    return s


def otel_env(service: str, receiver_port: int, *, zipkin: bool = False) -> dict[str, str]:
    """Environment for ``opentelemetry-instrument``: OTLP/HTTP protobuf to the receiver, fast batches."""
    exporters = "otlp,zipkin_json" if zipkin else "otlp"
    return {
        "OTEL_SERVICE_NAME": service,
        "OTEL_TRACES_EXPORTER": exporters,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{receiver_port}/v1/traces",
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"http://127.0.0.1:{receiver_port}/api/v2/spans",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


@contextmanager
def run_services(
    receiver_port: int, *, zipkin: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Start ``shop`` and ``backend`` (gunicorn, 1 gthread worker, 8 threads each) on listeners this
    process binds on 127.0.0.1:0 and hands over as ``fd://N``; yields their ports and pids.
    ``extra_env`` goes to both (e.g. ``OTEL_TRACES_SAMPLER``)."""
    tool = instrument_bin()
    if tool is None:
        raise RuntimeError("opentelemetry-instrument not installed (pip install 'loopscope[test]')")
    with ExitStack() as stack:
        socks = {name: stack.enter_context(_listener()) for name in ("shop", "backend")}
        ports = {name: s.getsockname()[1] for name, s in socks.items()}
        procs = {}
        for name, sock in socks.items():
            env = dict(
                os.environ, **otel_env(name, receiver_port, zipkin=zipkin), **(extra_env or {})
            )
            env["SELF_URL"] = f"http://127.0.0.1:{ports[name]}"
            env["OTHER_URL"] = f"http://127.0.0.1:{ports['backend']}"
            fd = sock.fileno()
            cmd = [tool, sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "-w", "1"]
            cmd += [
                "-k",
                "gthread",
                "--threads",
                "8",
                "--log-level",
                "warning",
                "otel_selfcall:app",
            ]
            procs[name] = subprocess.Popen(cmd, cwd=HERE, env=env, pass_fds=(fd,))
            stack.callback(_stop, procs[name])
        _wait_up(ports["shop"])
        _wait_up(ports["backend"])
        yield {"ports": ports, "pids": {n: p.pid for n, p in procs.items()}}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_up(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def drive(port: int, rounds: int) -> None:
    """``rounds`` sequential requests to each endpoint, interleaved."""
    for _ in range(rounds):
        for ep in ENDPOINTS:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{ep}", timeout=10).read()


def wait_for(count: Any, expected: int, timeout_s: float = 30) -> None:
    """Poll ``count()`` until it reaches ``expected``."""
    deadline = time.monotonic() + timeout_s
    while count() < expected and time.monotonic() < deadline:
        time.sleep(0.1)


def _hex_ids(node: Any) -> Any:
    """MessageToDict gives bytes ids as base64; OTLP/JSON wants hex."""
    if isinstance(node, dict):
        return {
            k: (
                base64.b64decode(v).hex()
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                else _hex_ids(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def record_fixtures(out_dir: Path, rounds: int = 5) -> None:
    """Run the app with both exporters and write the OTLP/JSON and Zipkin fixtures."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from loopscope.traces.receiver import OtlpReceiver

    bodies: list[tuple[str, bytes]] = []
    with OtlpReceiver(port=0, on_body=lambda p, _c, b: bodies.append((p, b))) as rx:
        with run_services(rx.port, zipkin=True) as app:
            drive(app["ports"]["shop"], rounds)
            wait_for(lambda: rx.stats().spans, 2 * SPANS_PER_ROUND * rounds)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, zipkin = [], []
    for path, body in bodies:
        if path == "/v1/traces":
            msg = ExportTraceServiceRequest.FromString(body)
            lines.append(json.dumps(_hex_ids(json_format.MessageToDict(msg)), sort_keys=True))
        else:
            zipkin.extend(json.loads(body))
    (out_dir / "selfcall.otlp.jsonl").write_text("\n".join(lines) + "\n")
    (out_dir / "selfcall.zipkin.json").write_text(json.dumps(zipkin, indent=1) + "\n")
    print(f"{len(lines)} OTLP requests, {len(zipkin)} Zipkin spans -> {out_dir}")


if __name__ == "__main__":
    record_fixtures(HERE.parents[1] / "unit" / "traces" / "fixtures")

"""The traced-command runner: its environment, process discovery, and a real (tiny) instrumented command
stopped by a forwarded SIGTERM. The full app with the kernel view is tests/live/test_traces_run.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from loopscope.errors import UsageError
from loopscope.traces.run import command_pids, find_instrument, otel_env, run_traced


def test_env_points_the_exporter_at_the_receiver_and_keeps_the_rest():
    base = {
        "PATH": "/bin",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_EXPORTER": "console",
    }
    env = otel_env(["/usr/bin/gunicorn", "app:app"], 4318, base=base)
    assert env["OTEL_SERVICE_NAME"] == "gunicorn"
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4318/v1/traces"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_BSP_SCHEDULE_DELAY"] == "200"
    assert env["OTEL_METRICS_EXPORTER"] == env["OTEL_LOGS_EXPORTER"] == "none"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["PATH"] == "/bin"
    named = otel_env(["x"], 1, base={"OTEL_SERVICE_NAME": "shop"})
    assert named["OTEL_SERVICE_NAME"] == "shop"
    assert otel_env(["x"], 1, service_name="cart", base={})["OTEL_SERVICE_NAME"] == "cart"
    assert (
        otel_env(["x"], 9, base={}, receiver_host="::1")["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        == "http://[::1]:9/v1/traces"
    )


def test_command_pids_finds_the_group_and_descendants():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(30)']); time.sleep(30)",
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        pids = command_pids(child.pid)
        while len(pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = command_pids(child.pid)
        assert child.pid in pids and len(pids) == 2
        assert os.getpid() not in pids
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def test_an_empty_command_is_a_usage_error():
    with pytest.raises(UsageError, match="after --"):
        run_traced([])


def test_a_real_command_is_traced_and_stopped_by_a_forwarded_sigterm():
    try:
        find_instrument()
    except UsageError:
        pytest.skip("opentelemetry-instrument is not installed")
    script = (
        "import signal, sys, time\n"
        "from opentelemetry import trace\n"
        "with trace.get_tracer('t').start_as_current_span('work', kind=trace.SpanKind.SERVER):\n"
        "    pass\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    ready = threading.Event()
    timer = threading.Timer(15, lambda: os.kill(os.getpid(), signal.SIGTERM))

    def on_ready(_rx, _pid):
        ready.set()
        timer.start()

    # the SIGTERM sent to this process (the timer) is what loopscope forwards to the command's group
    run = run_traced(
        [sys.executable, "-c", script], service_name="tiny", on_ready=on_ready, tick_s=0.05
    )
    timer.cancel()
    assert ready.is_set()
    assert run.stopped_by == "SIGTERM" and not run.killed
    assert run.returncode == 0
    assert run.service_name == "tiny"
    assert [(s.service, s.name) for s in run.spans] == [("tiny", "work")]
    assert run.receiver.dropped_spans == 0

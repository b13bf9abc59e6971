"""Live: ``loopscope watch`` end to end (real CLI process, real self-calling server), and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = [pytest.mark.linux, pytest.mark.root]

SELF_CALLER = textwrap.dedent("""
    import socket, sys, threading, time
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(64)
    port = srv.getsockname()[1]
    def serve():
        while True:
            c, _ = srv.accept(); c.recv(64); c.sendall(b"ok"); c.close()
    threading.Thread(target=serve, daemon=True).start()
    print(port, flush=True)
    sys.stdin.readline()          # go
    print(time.time_ns(), flush=True)
    for _ in range(int(sys.argv[1])):
        c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"hi"); c.recv(8); c.close()
        time.sleep(0.005)
    print("done", flush=True)
    sys.stdin.readline()
""")


def test_watch_json_reports_self_calls_with_rates() -> None:
    n = 40
    app = subprocess.Popen(
        [sys.executable, "-c", SELF_CALLER, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None and app.stdin is not None
        port = int(app.stdout.readline())
        watch = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loopscope",
                "watch",
                "--duration",
                "6",
                "--json",
                "--port",
                str(port),
                "--fail-on",
                "never",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)  # the session is up (checked below against the window start)
        app.stdin.write("go\n")
        app.stdin.flush()
        first_call_ns = int(app.stdout.readline())
        assert app.stdout.readline().strip() == "done"
        out, _ = watch.communicate(timeout=60)
    finally:
        app.kill()
        app.wait()
    assert watch.returncode == 0
    doc = json.loads(out)
    assert doc["command"] == "watch" and "schema_version" in doc
    assert doc["started_at_ns"] < first_call_ns, "watch was not ready in 3 s (busy host?)"
    (entry,) = doc["apps"]
    assert entry["ports"] == [port] and entry["pids"] == [app.pid]
    assert entry["self_connections"] == n and entry["external_connections"] == 0
    assert entry["self_per_s"] > 0
    assert {s["name"]: s["active"] for s in doc["sources"]}["ebpf_sockops"] is True
    assert any(f["code"] == "SELF_CALL" for f in doc["findings"])
    (edge,) = doc["edges"]
    assert edge["self_call"] and edge["client_pids"] == [app.pid] and edge["connections"] == n


@pytest.mark.parametrize(
    "args", [["--duration", "-1"], ["--netns", "no-such-netns-x"], ["--interval", "0"]]
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "loopscope", "watch", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr

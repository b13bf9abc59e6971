"""Live: a listener that stops accepting saturates its accept queue; watch (CLI, --netns) says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns]

STUCK = textwrap.dedent("""
    import socket, sys, time
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)   # never accepts
    port = srv.getsockname()[1]
    conns = []
    for _ in range(12):
        c = socket.socket(); c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        conns.append(c)
    print(port, flush=True)
    sys.stdin.readline()
""")


@pytest.fixture()
def netns() -> object:
    name = f"lsw-press-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def test_accept_queue_saturated_in_a_namespace(netns: str) -> None:
    app = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", STUCK],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        port = int(app.stdout.readline())
        js = subprocess.run(
            [
                sys.executable,
                "-m",
                "loopscope",
                "watch",
                "--netns",
                netns,
                "--duration",
                "2",
                "--interval",
                "0.5",
                "--json",
                "--fail-on",
                "high",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        text = subprocess.run(
            [
                sys.executable,
                "-m",
                "loopscope",
                "watch",
                "--netns",
                netns,
                "--duration",
                "1.5",
                "--fail-on",
                "never",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        app.kill()
        app.wait()
    assert js.returncode == 1, js.stderr  # a high finding
    doc = json.loads(js.stdout)
    assert doc["netns"] == netns
    (lst,) = [x for x in doc["listeners"] if x["port"] == port]
    assert lst["backlog"] == 4 and lst["max_accept_queue"] == 5  # the kernel admits backlog + 1
    assert lst["saturated_samples"] == lst["samples"] >= 3
    found = [f for f in doc["findings"] if f["code"] == "ACCEPT_QUEUE_SATURATED"]
    assert len(found) == 1 and str(port) in found[0]["subject"]
    assert text.returncode == 0
    assert "ACCEPT_QUEUE_SATURATED" in text.stdout and "Sources" in text.stdout
    assert max(len(line) for line in text.stdout.splitlines()) <= 100

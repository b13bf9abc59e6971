"""Live (slow): 3,000 new connections/s in a fresh netns: every one caught, each with its client pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from loopscope.analysis.watch.report import summarize_watch
from loopscope.watch.session import WatchOptions, WatchSession

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

SERVER = """
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4096)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.recv(64); c.sendall(b"pong"); c.close()
"""
CLIENT = """
import json, socket, sys, time
port, count, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ports = []; start = time.monotonic()
for i in range(count):
    d = start + i / rate - time.monotonic()
    if d > 0: time.sleep(d)
    c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"ping"); c.recv(8)
    ports.append(c.getsockname()[1]); c.close()
print(json.dumps({"ports": ports, "wall_s": time.monotonic() - start}), flush=True)
"""


@pytest.mark.parametrize(("count", "rate"), [(900, 300.0), (6000, 3000.0)])
def test_every_short_connection_caught_with_client_pid(count: int, rate: float) -> None:
    ns = f"lsw-rate-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with WatchSession(WatchOptions(netns=ns)) as session:
            client = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    "-c",
                    CLIENT,
                    str(port),
                    str(count),
                    str(rate),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            while client.poll() is None:
                time.sleep(0.2)
                session.poll()
            time.sleep(0.3)
            session.poll()
            data = session.data()
        truth = json.loads(client.stdout.read() if client.stdout else "{}")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
    report = summarize_watch(data)
    insts = [i for i in report.instances if i.server.port == port and i.established]
    assert len(insts) == count == len(truth["ports"])
    assert sorted(i.client.port for i in insts) == sorted(truth["ports"])
    assert {i.client_pid for i in insts} == {client.pid}
    (app,) = [a for a in report.apps if port in a.ports]
    assert app.pids == (server.pid,) and app.external_connections == count
    assert not [s for s in report.sources if s.dropped]

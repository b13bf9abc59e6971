"""Live: `ports` verdicts as an unprivileged user, who cannot read root's /proc/PID/fd.

In a network namespace of its own (so Redis can have its well-known port 6379), the test starts as root a
real redis-server on 0.0.0.0:6379, another on 0.0.0.0:<odd port>, and a Python listener on 0.0.0.0:<random
high port>; then runs `python -m loopscope ports --json [--fingerprint]` as uid/gid 65534 (nobody) in that
namespace. Without owners, the verdict must come from the other clues: Redis on 6379 is "high EXPOSED"
from its port, Redis on an odd port from the fingerprint, and the Python listener, which nothing names,
is "unknown" (it used to be "ok").
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from procs import python_child, stop_process

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns, pytest.mark.services]

AS_NOBODY = """
import contextlib, io, os, runpy, sys
def cli(args):
    sys.argv = ["loopscope", *args]
    try:
        runpy.run_module("loopscope", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code
    return 0
# /root (the interpreter's tree) is 0700 here: load every module as root with the same command first.
with contextlib.redirect_stdout(io.StringIO()):
    cli(sys.argv[1:])
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
sys.exit(cli(sys.argv[1:]))
"""

LISTENER = """
import json, socket
s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen()
print(json.dumps({"port": s.getsockname()[1]}), flush=True)
"""


def _listening(pid: int, port: int) -> bool:
    """A LISTEN row (state 0A) for ``port`` in the namespace of ``pid``."""
    with open(f"/proc/{pid}/net/tcp") as fh:
        return any(
            int(f[1].split(":")[1], 16) == port and f[3] == "0A"
            for f in (line.split() for line in fh.readlines()[1:])
        )


@pytest.fixture
def namespace() -> Iterator[str]:
    if shutil.which("ip") is None or shutil.which("redis-server") is None:
        pytest.skip("needs iproute2 and redis-server (apt-get install iproute2 redis-server)")
    name = f"lsunpriv{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _redis(netns: str, port: int, tmp: str) -> subprocess.Popen[bytes]:
    argv = ["ip", "netns", "exec", netns, shutil.which("redis-server") or "redis-server"]
    argv += ["--port", str(port), "--bind", "0.0.0.0", "--save", "", "--appendonly", "no"]
    argv += ["--dir", tmp, "--protected-mode", "no", "--daemonize", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _listening(proc.pid, port):
        assert proc.poll() is None, f"redis-server on {port} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"redis-server on {port} is not listening"
        time.sleep(0.05)
    return proc


def _ports_as_nobody(netns: str, *args: str) -> dict:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", AS_NOBODY, "ports", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_unprivileged_verdicts_come_from_port_and_fingerprint(namespace):
    odd_port = random.randint(
        20000, 30000
    )  # below the ephemeral range the Python listener draws from
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        well_known = _redis(namespace, 6379, d1)
        odd = _redis(namespace, odd_port, d2)
        try:
            with python_child(LISTENER, prefix=["ip", "netns", "exec", namespace]) as (_, py):
                plain = _ports_as_nobody(namespace)
                printed = _ports_as_nobody(namespace, "--fingerprint")
        finally:
            stop_process(well_known)
            stop_process(odd)

    def verdicts(doc: dict) -> dict[int, str]:
        return {r["port"]: r["verdict"] for r in doc["listeners"] if r["proto"] == "tcp"}

    for doc in (plain, printed):  # really unprivileged: root's sockets seen, their owners not
        rows = [r for r in doc["listeners"] if r["port"] in (6379, odd_port, py["port"])]
        assert len(rows) == 3 and all(r["uid"] == 0 and r["processes"] == [] for r in rows)
        assert any("root" in g["reason"] for g in doc["gaps"]), doc["gaps"]
    assert verdicts(plain) == {6379: "high EXPOSED", odd_port: "unknown", py["port"]: "unknown"}
    assert verdicts(printed) == {
        6379: "high EXPOSED",
        odd_port: "high EXPOSED",
        py["port"]: "unknown",
    }
    (by_print,) = [
        f
        for f in printed["findings"]
        if f["code"] == "EXPOSED_SENSITIVE_SERVICE" and f"0.0.0.0:{odd_port}/tcp" in f["subject"]
    ]
    assert "fingerprint 'redis'" in by_print["evidence"]
    assert {r["port"]: r["service"].split(" ")[0] for r in printed["listeners"]} == {
        6379: "redis",
        odd_port: "redis",
        py["port"]: "unknown",
    }

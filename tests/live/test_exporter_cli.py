"""Live: ``loopscope exporter`` as a process: a hostile client name comes out escaped and parses back,
SIGTERM and SIGHUP detach the eBPF program (checked with BPF_PROG_QUERY on the cgroup root), a second
exporter on the same port says why it cannot run, and --textfile writes a parseable file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopscope.backends.linux.bpf.sockops import count_attached_sockops, find_cgroup2_root

pytestmark = [pytest.mark.linux, pytest.mark.root]

_READY = re.compile(r"serving http://([0-9.]+):(\d+)/metrics")


@contextmanager
def exporter(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``loopscope exporter --listen 127.0.0.1:0 ARGS``; yields (process, bound port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopscope", "exporter", "--listen", "127.0.0.1:0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError(f"exporter exited: {proc.wait(5)}")
            m = _READY.search(line)
            if m:
                port = int(m.group(2))
        assert port is not None
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        return str(resp.read().decode())


def _cgroup() -> str:
    with open("/proc/mounts", encoding="utf-8") as fh:
        root = find_cgroup2_root(fh.read())
    assert root is not None
    return root


def test_a_hostile_client_name_is_escaped_and_parses_back() -> None:
    hostile = 'ev"l\n{x}\\q\t'  # 12 bytes: fits comm's 15
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    code = (
        "import ctypes, socket, sys\n"
        "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
        "for _ in range(3):\n"
        "    socket.create_connection(('127.0.0.1', int(sys.argv[2]))).close()\n"
    )
    with exporter() as (_proc, eport):
        subprocess.run([sys.executable, "-c", code, hostile, str(port)], check=True, timeout=30)
        text = scrape(eport)
    srv.close()
    assert "\n{x}" not in text
    found = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "loopscope_loopback_connections_total" and s.labels["port"] == str(port):
                found[s.labels["client_app"]] = s.value
    assert found == {hostile: 3.0}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signals_detach_the_program(sig: signal.Signals) -> None:
    root = _cgroup()
    before = count_attached_sockops(root)
    with exporter() as (proc, _port):
        assert count_attached_sockops(root) == before + 1
        proc.send_signal(sig)
        assert proc.wait(15) == 0
    assert count_attached_sockops(root) == before


def test_a_second_exporter_on_the_same_port_says_why() -> None:
    with exporter() as (_proc, port):
        second = subprocess.run(
            [sys.executable, "-m", "loopscope", "exporter", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert scrape(port).startswith("# HELP")  # the first one still serves
    assert second.returncode == 2
    assert "another exporter running?" in second.stderr


def test_textfile_is_written_atomically_and_parses() -> None:
    d = tempfile.mkdtemp(prefix="ls-exporter-")
    path = os.path.join(d, "loopscope.prom")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopscope", "exporter", "--textfile", path, "--interval", "0.5"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(path, encoding="utf-8") as fh:
            names = {f.name for f in text_string_to_metric_families(fh.read())}
        assert {"loopscope_loopback_up", "loopscope_exporter_source_info"} <= names
        assert [n for n in os.listdir(d) if n != "loopscope.prom"] == []  # no temp file left
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        shutil.rmtree(d, ignore_errors=True)

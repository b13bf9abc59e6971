"""Tables never drop a column and never wrap or cut an address or port (issue #12): the real commands
at 60, 80, 100 and 200 columns under a pseudo-terminal (rich sees a TTY) and in a pipe, around a
listener on 127.0.0.1:0 and one on [::1]:0 that this test starts (with a connection to itself)."""

from __future__ import annotations

import os
import pty
import re
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from procs import python_child

pytestmark = pytest.mark.linux

WIDTHS = [60, 80, 100, 200]
COMM = "loopscope-width"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

LISTENER = """
import json, socket
s4 = socket.socket(); s4.bind(("127.0.0.1", 0)); s4.listen(16)
s6 = socket.socket(socket.AF_INET6); s6.bind(("::1", 0)); s6.listen(16)
c = socket.create_connection(s4.getsockname()); a, _ = s4.accept()
import ctypes, os, signal, time
ctypes.CDLL(None).prctl(15, b"loopscope-width", 0, 0, 0)  # PR_SET_NAME: a 15-byte comm
for _ in range(SHARERS):  # prefork-style: loopscope-width[pid,pid,...]: rows over 100 columns
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the parent
        time.sleep(3600)
        os._exit(0)
import threading
held = []
for s in (s4, s6):  # accept what probes open, so the backlog never fills
    threading.Thread(target=lambda s=s: [held.append(s.accept()) for _ in iter(int, 1)], daemon=True).start()
print(json.dumps({"port4": s4.getsockname()[1], "port6": s6.getsockname()[1]}), flush=True)
"""


def _env(columns: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return env


def run_pty(
    args: list[str], columns: int, timeout_s: float = 120, *, raw: bool = False
) -> tuple[int, str]:
    """Run the real CLI with stdout and stderr on a pseudo-terminal of ``columns`` columns; return its
    exit code and what it wrote, CRLF as LF, ANSI sequences removed unless ``raw``."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopscope", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=_env(columns),
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    code = proc.wait(30)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return code, text if raw else ANSI.sub("", text)


def run_pipe(args: list[str], timeout_s: float = 120) -> tuple[int, str]:
    res = subprocess.run(
        [sys.executable, "-m", "loopscope", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_env(None),
    )
    return res.returncode, res.stdout + res.stderr


@pytest.fixture(scope="module")
def listener() -> Iterator[dict[str, Any]]:
    with python_child(LISTENER.replace("SHARERS", "8")) as (proc, info):
        yield {**info, "pid": proc.pid}


def _row_with(text: str, *parts: str) -> str:
    """The one line holding every part, whole (words, not substrings of longer values)."""
    pattern = r"\s+".join(rf"(?<![\w.:]){re.escape(p)}(?![\w.:])" for p in parts)
    found = [line for line in text.splitlines() if re.search(pattern, line)]
    assert found, f"no line has {parts!r} intact:\n{text}"
    return found[0]


def _header_with(text: str, *headers: str) -> None:
    assert any(all(h in line.split() for h in headers) for line in text.splitlines()), (
        f"header {headers!r} split:\n{text}"
    )


MODES = [*WIDTHS, None]  # None: a pipe


def _run(args: list[str], columns: int | None) -> tuple[int, str]:
    return run_pipe(args) if columns is None else run_pty(args, columns)


@pytest.mark.parametrize("columns", MODES)
def test_ports(listener, columns):
    code, out = _run(["ports"], columns)
    assert code in (0, 1), out
    _header_with(out, "Proto", "Address", "Port", "Scope", "Process", "User", "AcceptQ", "Verdict")
    _row_with(out, "tcp", "127.0.0.1", str(listener["port4"]), "loopback")
    _row_with(out, "tcp", "[::1]", str(listener["port6"]), "loopback")


@pytest.mark.parametrize("columns", MODES)
def test_scan(listener, columns):
    code, out = _run(["scan"], columns)
    assert code in (0, 1), out
    _header_with(out, "Proto", "Address", "Port", "Scope", "Process", "AcceptQ", "Verdict")
    _row_with(out, "127.0.0.1", str(listener["port4"]))
    _row_with(out, "[::1]", str(listener["port6"]))


@pytest.mark.parametrize("columns", MODES)
def test_map(listener, columns):
    code, out = _run(["map", "--pid", str(listener["pid"])], columns)
    if code == 2 and "no such option" in out.lower():  # --pid on map comes with issue #12 filters
        code, out = _run(["map"], columns)
    assert code in (0, 1), out
    _header_with(out, "Client", "Server", "Port", "Proto", "Conns", "States", "Self")
    line = _row_with(out, str(listener["port4"]), "tcp")
    assert "SELF" in line and "ESTAB:" in line


@pytest.mark.parametrize("columns", MODES)
def test_probe(listener, columns):
    code, out = _run(["probe", f"tcp://127.0.0.1:{listener['port4']}"], columns)
    assert code in (0, 1), out
    _header_with(out, "Address", "Result")
    _row_with(out, "127.0.0.1", "ok")


@pytest.mark.parametrize("columns", MODES)
def test_doctor(columns):
    code, out = _run(["doctor"], columns)
    assert code in (0, 1), out
    _header_with(out, "check", "verdict", "evidence")
    _row_with(out, "lo", "exists", "and", "is", "UP")


@pytest.mark.parametrize("columns", [60, 80, None])
def test_watch(listener, columns):
    code, out = _run(["watch", "--duration", "1", "--no-ebpf", "--nice", "0"], columns)
    assert code in (0, 1), out
    _header_with(out, "App", "Ports", "Self", "ToOthers")
    ports = ",".join(str(p) for p in sorted((listener["port4"], listener["port6"])))
    row = _row_with(out, ports)  # the ports are never cut; the app label may shorten first
    full = f"{COMM}[{listener['pid']}," in row
    assert full or (columns is not None and COMM[:8] in row and "\u2026" in row), row
    _header_with(out, "Source", "On", "Events", "Lost", "Detail")


@pytest.mark.parametrize("columns", [60, 80, None])
def test_bench_tiny(columns):
    args = ["bench", "--paths", "tcp4,udp4", "--sizes", "1", "--count", "20", "--warmup", "2"]
    code, out = _run([*args, "--no-throughput"], columns)
    assert code in (0, 1), out
    _header_with(out, "path", "size", "n", "p50", "p99")
    _row_with(out, "TCP", "127.0.0.1", "1", "B", "20")


@pytest.mark.parametrize("columns", [60, 80, None])
def test_simulate_tiny(columns):
    pytest.importorskip("numpy")
    code, out = _run(["simulate", "--rate", "50", "--requests", "200"], columns)
    assert code in (0, 1), out
    assert "│" not in out or "┃" not in out  # sanity: box drawing is not split into letters
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and not any(len(line.strip()) == 1 and line.strip().isalpha() for line in lines)


@pytest.mark.parametrize("command", [["ports"], ["map"], ["scan"]])
def test_tsv_is_one_row_per_line_with_field_names(listener, command):
    res = subprocess.run(
        [sys.executable, "-m", "loopscope", *command, "--format", "tsv"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(80),
    )
    assert res.returncode in (0, 1), res.stderr
    blocks = [b.splitlines() for b in res.stdout.split("\n\n") if b.strip()]
    for block in blocks:
        header = block[0].split("\t")
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in header), header
        assert all(len(line.split("\t")) == len(header) for line in block[1:]), block
    ports = {
        row.split("\t")[block[0].split("\t").index("port")]
        for block in blocks
        if "port" in block[0].split("\t")
        for row in block[1:]
    }
    assert str(listener["port4"]) in ports


def test_wide_never_shortens(listener):
    code, out = run_pty(["ports", "--wide"], 60)
    assert code in (0, 1)
    assert "…" not in out
    assert f"{COMM}[{listener['pid']}," in out

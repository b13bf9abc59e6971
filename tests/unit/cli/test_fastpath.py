"""The start-up fast path: which command lines it takes, and the same bytes as the typer path.

The typer path is forced with the ``--opt=value`` spelling, which the fast path leaves to typer.
Both run as real processes over this host's real socket table; ``--port`` of a listener the test
holds open keeps the output stable while other tests open and close sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from loopscope.cli.fastpath import FAST_COMMANDS, parse_fast

pytestmark = pytest.mark.linux

RUN = (
    "import sys\n"
    "from loopscope.cli.app import _run\n"
    "code = _run(sys.argv[1:])\n"
    "sys.stdout.flush()\n"
    "sys.stderr.write('typer loaded: %s' % any(m.split('.')[0] in ('typer', 'click', 'rich')"
    " for m in sys.modules))\n"
    "sys.exit(code)\n"
)


def run(*args: str) -> tuple[int, bytes, str]:
    proc = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr.decode()


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv
    finally:
        srv.close()


@pytest.mark.parametrize(
    "args",
    [
        ["ports", "--json"],
        ["ports", "--json", "--fail-on", "never", "--port", "22", "--proto", "tcp"],
        ["ports", "--no-processes", "--json", "--scope", "loopback", "--source", "procfs"],
        ["ports", "--json", "--all-netns", "--pid", "1"],
    ],
)
def test_takes_simple_command_lines(args: list[str]) -> None:
    parsed = parse_fast(args)
    assert parsed is not None
    command, opts = parsed
    assert command is FAST_COMMANDS[("ports", "--json")] and opts["json"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["ports", "--format", "tsv"],
        ["ports", "--wide", "--format", "tsv", "--port", "22", "--fail-on", "never"],
        ["ports", "--format", "tsv", "--all-netns", "--no-processes", "--proto", "udp"],
    ],
)
def test_takes_tsv_command_lines(args: list[str]) -> None:
    parsed = parse_fast(args)
    assert parsed is not None
    command, opts = parsed
    assert command is FAST_COMMANDS[("ports", "--format")] and opts["format"] == "tsv"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["ports"],  # the table: rich
        ["ports", "--json", "--help"],
        ["ports", "--json", "--port=22"],
        ["ports", "--json", "--port", "0"],
        ["ports", "--json", "--port", "70000"],
        ["ports", "--json", "--port", "²"],
        ["ports", "--json", "--port"],
        ["ports", "--json", "--scope", "host"],  # a usage error with its own wording
        ["ports", "--json", "--source", "psutil", "--netns", "x"],
        ["ports", "--json", "--netns", "x", "--all-netns"],
        ["ports", "--json", "--fail-on", "HIGH"],
        ["ports", "--json", "--fingerprint"],
        ["ports", "--json", "extra"],
        ["map", "--json"],
        ["--version"],
        ["ports", "--format", "table"],  # drawn by rich
        ["ports", "--format=tsv"],
        ["ports", "--format", "tsv", "--json"],  # --json wins: typer says so
        ["ports", "--format", "tsv", "--format", "tsv"],
        ["ports", "--format", "tsv", "--fingerprint"],
        ["ports", "--netns", "--format", "tsv"],
    ],
)
def test_leaves_everything_else_to_typer(args: list[str]) -> None:
    assert parse_fast(args) is None


@pytest.mark.parametrize("output", [["--json"], ["--format", "tsv"]])
def test_same_bytes_as_the_typer_path(listening: socket.socket, output: list[str]) -> None:
    port = str(listening.getsockname()[1])
    pid = str(os.getpid())
    for extra in (
        ["--proto", "tcp"],
        ["--scope", "loopback", "--fail-on", "never"],
        ["--pid", pid],
        ["--no-processes"],
    ):
        for _ in range(10):  # gap counts move when other processes exit or close sockets mid-scan
            fast = run("ports", *output, "--port", port, *extra)
            slow = run("ports", *output, f"--port={port}", *extra)
            if fast[:2] == slow[:2]:
                break
        assert fast[2].endswith("typer loaded: False"), fast[2]
        assert slow[2].endswith("typer loaded: True"), slow[2]
        assert fast[:2] == slow[:2], extra
        if output == ["--json"]:
            doc = json.loads(fast[1])
            assert [row["port"] for row in doc["listeners"]] == [int(port)]
        else:
            lines = fast[1].decode().split("\n\n")[0].splitlines()
            assert lines[0].startswith("proto\taddress\tport\t") and len(lines) == 2
            assert lines[1].split("\t")[2] == port


HOSTILE = (
    "import socket, sys\n"
    "open('/proc/self/comm', 'w').write('ev\\til\\x1b[2J\\u202e')\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
    "print(s.getsockname()[1], flush=True); sys.stdin.read()\n"
)


def test_tsv_escapes_a_hostile_process_name_as_the_typer_path() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOSTILE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        fast = run("ports", "--format", "tsv", "--port", port)
        slow = run("ports", "--format=tsv", "--port", port)
    finally:
        proc.kill()
        proc.wait()

    def tables(out: bytes) -> list[str]:  # the gaps move with processes exiting mid-scan
        return [t for t in out.decode().split("\n\n") if not t.startswith("what\treason\n")]

    assert fast[0] == slow[0] and tables(fast[1]) == tables(slow[1])
    row = fast[1].decode().splitlines()[1]
    assert "ev\\til\\x1b[2J\\u202e[" in row and "\x1b" not in row, row


def test_errors_end_as_in_the_typer_path(listening: socket.socket) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: a port nobody listens on
    try:
        port = str(sock.getsockname()[1])
        fast = run("ports", "--json", "--port", port)
        slow = run("ports", "--json", f"--port={port}")
    finally:
        sock.close()
    assert fast[0] == slow[0] == 2 and fast[1] == slow[1] == b""
    assert fast[2].replace("typer loaded: False", "") == slow[2].replace("typer loaded: True", "")
    assert f"nothing listens on port {port}" in fast[2]


# Modules `ports --json` must not import: the table stack, the talk map and what only other commands
# or other namespaces need (ctypes and subprocess: setns on Python < 3.12 and `ctypes.util`).
NOT_ON_THE_FAST_PATH = (
    "typer",
    "click",
    "rich",
    "loopscope.analysis.talkmap",
    "loopscope.analysis.stack",
    "ctypes",
    "subprocess",
)


def _imported(*args: str) -> set[str]:
    """Every module a real ``python -X importtime ...`` process imported (its stderr report)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


@pytest.mark.parametrize("output", [["--json"], ["--format", "tsv"]])
def test_ports_fast_path_imports_nothing_it_does_not_use(output: list[str]) -> None:
    at_start = _imported("-c", "pass")  # what this interpreter's site hooks import anyway
    loaded = _imported("-m", "loopscope", "ports", *output, "--fail-on", "never") - at_start
    assert "loopscope.collect.collector" in loaded  # the report is read: the check can see imports
    extra = sorted(
        m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_ON_THE_FAST_PATH)
    )
    assert extra == [], f"`loopscope ports {' '.join(output)}` imports {extra}"

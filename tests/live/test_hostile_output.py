"""Hostile names and servers never reach the terminal raw (issue #15, items 1-2).

A real process renames itself (prctl(PR_SET_NAME) via ctypes) to ``\\x1b[2J\\x1b[31mX`` (clear the
screen, then red), listens on 127.0.0.1:0 with a connection to itself, and answers HTTP with
``Server: [/x]\\x1b[2J`` (rich markup and an escape sequence) and a title-setting ``X-Powered-By``.
Every command that can show it runs for real, in a pipe: no ESC or other control byte reaches
stdout or stderr (tabs only in TSV), the exit code is 0 or 1 (not 2: no MarkupError), and the escaped
name is visible.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from procs import python_child
from test_output_widths import run_pty

pytestmark = pytest.mark.linux

HOSTILE_COMM = "\x1b[2J\x1b[31mX"
SHOWN = "\\x1b[2J\\x1b[31mX"  # what a reader must see instead

SERVER = r"""
import ctypes, http.server, json, socket, threading
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(15, b"\x1b[2J\x1b[31mX", 0, 0, 0) == 0  # PR_SET_NAME

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response_only(200)
        self.send_header("Server", "[/x]\x1b[2J")
        self.send_header("X-Powered-By", "[bold]\x1b]0;pwned\x07")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
keep = socket.create_connection(("127.0.0.1", port))  # a self-call: an edge in map and watch
with open("/proc/self/comm", "rb") as f:
    comm = f.read().rstrip(b"\n").decode()
print(json.dumps({"port": port, "comm": comm}), flush=True)
"""

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture(scope="module")
def hostile() -> Iterator[dict[str, Any]]:
    with python_child(SERVER) as (proc, info):
        assert info["comm"] == HOSTILE_COMM
        yield {**info, "pid": proc.pid}


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "loopscope", *args], capture_output=True, timeout=120, env=env
    )


def _assert_clean(res: subprocess.CompletedProcess[bytes], *, tabs: bool = False) -> str:
    out, err = res.stdout.decode("utf-8"), res.stderr.decode("utf-8")
    assert res.returncode in (0, 1), (res.returncode, out, err)
    for name, text in (("stdout", out), ("stderr", err)):
        bad = CONTROL.findall(text.replace("\t", "") if tabs else text)
        assert not bad, f"{name} has control characters {bad!r}:\n{text!r}"
        assert "\t" not in text or tabs, f"{name} has a tab"
    assert "Traceback" not in err and "MarkupError" not in err
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["ports"],
        ["ports", "--wide"],
        ["scan"],
        ["map"],
        ["watch", "--duration", "1", "--no-ebpf", "--nice", "0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_hostile_process_name_is_escaped(hostile, args):
    out = _assert_clean(_run(*args))
    assert SHOWN in out


def test_hostile_name_in_tsv(hostile):
    out = _assert_clean(_run("ports", "--format", "tsv"), tabs=True)
    row = next(line for line in out.splitlines() if f"\t{hostile['port']}\t" in line)
    assert SHOWN in row


def test_hostile_name_in_dot_is_escaped_and_quoted(hostile):
    out = _assert_clean(_run("map", "--dot"))
    assert SHOWN.replace("\\", "\\\\") in out  # printable() escape, then DOT's own backslash escape


def test_fingerprint_with_hostile_server_header(hostile):
    out = _assert_clean(_run("ports", "--fingerprint", "--port", str(hostile["port"])))
    assert SHOWN in out


def test_probe_hostile_headers_and_path_are_data_not_markup(hostile):
    out = _assert_clean(_run("probe", f"http://127.0.0.1:{hostile['port']}/[/x]"))
    assert "[/x]\\x1b[2J" in out  # the Server header, escaped
    assert "\\x1b]0;pwned\\x07" in out
    assert "/[/x]" in out  # the path in the title


def test_probe_findings_with_hostile_listener(hostile):
    # every address: ::1 is refused, the diagnosis names the listener's owner
    out = _assert_clean(_run("probe", f":{hostile['port']}/"))
    assert "127.0.0.1" in out


def test_terminal_gets_only_rich_colours(hostile):
    code, out = run_pty(["ports"], 80, raw=True)
    assert code in (0, 1)
    rest = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's own SGR colours
    assert "\x1b" not in rest and "\x07" not in rest
    assert SHOWN in rest

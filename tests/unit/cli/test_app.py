"""The command-line boundary: version, -h, one-line usage errors checked before any work, a closed
or broken stdout (real child processes: `python -m loopscope`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from loopscope.cli.common import EXIT_BROKEN_PIPE

ENV = {k: v for k, v in os.environ.items() if k != "COLUMNS"}


def _run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopscope", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        **kw,
    )


def test_version_and_short_help():
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.startswith("loopscope ")
    short = _run("ports", "-h")
    assert short.returncode == 0 and "Usage: loopscope ports" in short.stdout


def test_probe_help_is_plain_text_not_markup():
    out = _run("probe", "--help")
    assert out.returncode == 0, out.stderr
    assert "[SCHEME://][HOST][:PORT][/PATH]" in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("ports", "--fail-on", "bogus"),
        ("watch", "--duration", "30", "--fail-on", "bogus"),
        ("bench", "--fail-on", "bogus"),
        ("simulate", "--fail-on", "bogus"),
        ("nosuchcommand",),
        ("ports", "--no-such-option"),
    ],
)
def test_usage_errors_are_one_line_exit_2_before_any_work(args):
    t0 = time.monotonic()
    out = _run(*args)
    assert out.returncode == 2
    assert out.stdout == ""  # nothing was run, nothing printed
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert time.monotonic() - t0 < 15  # watch --duration 30 never started


def test_closed_stdout_is_a_clear_error():
    out = subprocess.run(
        [sys.executable, "-m", "loopscope", "ports"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        env=ENV,
        preexec_fn=lambda: os.close(1),
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == "loopscope: error: stdout is closed; redirect it to a file or /dev/null"
    )


@pytest.mark.parametrize("args", [("ports",), ("ports", "--json"), ("doctor", "--json")])
def test_reader_gone_exits_quietly(args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopscope", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the first byte (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE
    assert err == "", err


def test_usage_error_escapes_what_was_typed():
    out = _run("ports", "--scope", "\x1b[2Jx")
    assert out.returncode == 2 and "\x1b" not in out.stderr
    assert "'\\x1b[2Jx'" in out.stderr

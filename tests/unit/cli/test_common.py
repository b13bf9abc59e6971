"""cli/common.py: the read summary line, the slow-read notice (terminals only) and large JSON."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from loopscope.cli.common import emit_json, print_read_summary, slow_read_notice
from loopscope.render.jsonable import format_json_document


@dataclass
class _Snap:
    sockets: tuple[int, ...]
    duration_ns: int | None


def test_read_summary_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    print_read_summary("map", [_Snap((0,) * 100_012, 840_000_000)], time.perf_counter_ns())
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("loopscope map: 100,012 sockets in 1 namespace read in 0.84 s; ")
    assert err.endswith(" s in all\n") and err.count("\n") == 1


def test_slow_read_notice_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = os.openpty()
    tty = os.fdopen(slave, "w")
    try:
        monkeypatch.setattr(sys, "stderr", tty)
        with slow_read_notice(after_s=0.05):
            ready, _, _ = select.select([master], [], [], 10.0)  # a slow read, shown while it runs
            assert ready
        with slow_read_notice(after_s=5.0):
            pass  # fast: nothing shown
        tty.flush()
        shown = os.read(master, 4096).decode()
    finally:
        tty.close()
        os.close(master)
    assert shown.count("loopscope: reading sockets and their processes ...") == 1
    assert shown.endswith("\r\x1b[2K")

    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    with slow_read_notice(after_s=0.0):
        time.sleep(0.05)
    assert pipe.getvalue() == ""


def test_large_json_is_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    body = {"edges": [{"port": 8080, "states": {"ESTABLISHED": 3}}], "empty": [], "none": None}
    emit_json("map", body, large=True)
    large = capsys.readouterr().out
    assert json.loads(large) == json.loads(format_json_document("map", body))
    assert large == format_json_document(
        "map", body
    )  # ASCII: the same bytes with or without orjson


def test_kept_results_last_only_until_the_next_command() -> None:
    from loopscope.cli.common import cli_errors, keep_until_exit, kept_results

    @cli_errors
    def keeps() -> None:
        keep_until_exit([1, 2, 3])

    @cli_errors
    def keeps_nothing() -> None:
        pass

    keeps()
    assert kept_results()
    keeps_nothing()  # an in-process caller running commands in a row holds only the last one's
    assert not kept_results()


def _loopscope(
    *args: str, stdout: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "loopscope", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=120,
    )


def test_map_and_scan_end_without_teardown_yet_flush_everything_and_keep_the_exit_code() -> None:
    import json

    for command in ("map", "scan"):
        done = _loopscope(command, "--json", "--fail-on", "never")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["command"] == command  # the whole document reached the pipe
        # a finding at or above --fail-on is exit 1 also on the no-teardown exit (when there is one)
        findings = json.loads(done.stdout)["findings"]
        strict = _loopscope(command, "--json", "--fail-on", "info")
        assert strict.returncode == (1 if findings else 0), strict.stderr


def test_map_into_a_closed_pipe_is_141_on_the_no_teardown_exit() -> None:
    # `loopscope map | true`: the reader is gone before the table is written
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "loopscope", "map", "--fail-on", "never", "--wide"],
            stdout=write_fd,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    finally:
        os.close(write_fd)
    assert done.returncode == 141, done.stderr
    assert b"Traceback" not in done.stderr

"""cli/common.py: the read summary line, the slow-read notice (terminals only) and large JSON."""

from __future__ import annotations

import io
import json
import os
import select
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

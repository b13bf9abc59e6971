"""Documents of scan/map and watch built from analysis values (a hostile comm stays text)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from loopscope.analysis.exposure import check_exposure
from loopscope.analysis.listeners import find_listeners
from loopscope.analysis.talkmap import build_talk_map
from loopscope.analysis.watch.findings import check_watch
from loopscope.analysis.watch.report import summarize_watch
from loopscope.report.build import (
    ReportMeta,
    read_meta,
    scan_document,
    watch_document,
    write_html,
)
from loopscope.report.html import format_html
from loopscope.testing.factories import connection, listener, make_snapshot, proc

HOSTILE = "<script>alert(1)</script>\x1b[2J"
META = ReportMeta(command_line="loopscope watch --html r.html", host="box", generated_at="t")


def _builders() -> ModuleType:
    path = Path(__file__).parents[1] / "analysis" / "watch" / "test_report.py"
    spec = importlib.util.spec_from_file_location("watch_report_builders", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _no_raw(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", page)


def test_watch_document_self_calling_app_with_hostile_name(tmp_path: Path) -> None:
    b = _builders()
    conns, samples, procs = b.self_calling_app(n=3, externals=4)
    bad = b.proc(11, HOSTILE, pgid=10)
    samples = tuple(
        b.sample(s.at_ns / 1e9, b.listener(8080, b.proc(10, HOSTILE), bad)) for s in samples
    )
    report = summarize_watch(b.data(conns, samples, (b.EBPF, b.DESTROY), {**procs, 11: bad}))
    findings = check_watch(report)
    doc = watch_document(report, findings, META, use_dot=False)
    assert [t.id for t in doc.tables] == ["apps", "edges", "listeners", "sources"]
    apps = doc.tables[0]
    assert apps.highlight == (True,) and "Amplif." in apps.headers and "Self/s" in apps.headers
    row = dict(zip(apps.headers, apps.rows[0], strict=True))
    assert row["Self/s"] == "1.2" and row["Amplif."] == "3"
    assert {f.code for f in doc.findings} >= {"SELF_CALL", "SELF_CALL_ON_HOT_PATH"}
    page = format_html(doc)
    _no_raw(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2J[10,11]" in page
    assert ":8080 1.2/s (12)" in page  # the self-call loop's label
    out = write_html(tmp_path / "r.html", doc)
    assert out.read_text(encoding="utf-8") == page


def test_scan_document_listeners_exposure_and_talk_map() -> None:
    worker = proc(101, HOSTILE)
    redis = proc(300, "redis-server")
    sockets = [
        listener("tcp", "127.0.0.1", 8000, owners=[worker]),
        listener("tcp", "0.0.0.0", 6379, owners=[redis]),
    ]
    sockets += connection(
        ("127.0.0.1", 40001), ("127.0.0.1", 8000), client_owner=worker, server_owner=worker
    )
    snap = make_snapshot(sockets, [worker, redis])
    talk = build_talk_map(snap)
    listeners = find_listeners(snap)
    findings = check_exposure(snap, listeners)
    doc = scan_document(
        "loopscope scan", [(snap, talk)], findings, [], META, listeners=listeners, use_dot=False
    )
    assert [t.id for t in doc.tables] == ["apps", "edges", "listeners"]
    assert doc.tables[0].highlight == (True,)
    assert any("EXPOSED" in cell for row in doc.tables[2].rows for cell in row)
    assert doc.summary == (
        "namespace host: 1 loopback connections, 1 self-call, 1 edges (source test)",
    )
    _no_raw(format_html(doc))


def test_read_meta() -> None:
    meta = read_meta(["/usr/bin/loopscope", "map", "--html", "a b.html"])
    assert meta.command_line == "loopscope map --html 'a b.html'"
    assert meta.host and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta.generated_at)

"""Rows, filters and the JSON body of a watch report (pure)."""

from __future__ import annotations

import json

from loopscope.analysis.watch.findings import check_watch
from loopscope.analysis.watch.report import summarize_watch
from loopscope.render.jsonable import json_document
from loopscope.watch.view import (
    APP_FIELDS,
    WATCH_EDGE_FIELDS,
    app_rows,
    filter_report,
    watch_edge_rows,
    watch_json,
)


def _load_builders():  # type: ignore[no-untyped-def]
    """The event builders of tests/unit/analysis/watch/test_report.py (tests run with --import-mode=importlib)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "_watch_builders", Path(__file__).parents[1] / "analysis" / "watch" / "test_report.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_b = _load_builders()
DESTROY, EBPF, HTTP, Conn, data, listener, proc, self_calling_app = (
    _b.DESTROY,
    _b.EBPF,
    _b.HTTP,
    _b.Conn,
    _b.data,
    _b.listener,
    _b.proc,
    _b.self_calling_app,
)


def _report():  # type: ignore[no-untyped-def]
    conns, samples, procs = self_calling_app(n=2, externals=3)
    other = Conn(47000, 9000, 99, 2.0, path="/other")
    samples = tuple(
        s.__class__(
            **{
                **{f: getattr(s, f) for f in s.__slots__},
                "listeners": (*s.listeners, listener(9000, proc(50, "redis"))),
            }
        )
        for s in samples
    )
    return summarize_watch(data([*conns, other], samples, (EBPF, DESTROY, HTTP), procs))


def test_rows_have_every_column_and_readable_values() -> None:
    report = _report()
    rows = app_rows(report.apps)
    assert [r["app"] for r in rows] == ["gunicorn[10,11]", "redis[50]"]
    assert rows[0]["factor"] == "2" and rows[0]["self"] == 6 and rows[0]["ext_req"] == 3
    assert all(set(r) == {f.name for f in APP_FIELDS} for r in rows)
    erows = watch_edge_rows(report.edges, report.window_s)
    assert all(set(r) == {f.name for f in WATCH_EDGE_FIELDS} for r in erows)
    assert erows[0]["self_call"] == "self" and erows[0]["rate"] == "0.6"


def test_filter_by_port_and_pid() -> None:
    report = _report()
    by_port = filter_report(report, (), (9000,))
    assert [a.name for a in by_port.apps] == ["redis[50]"] and [e.port for e in by_port.edges] == [
        9000
    ]
    by_pid = filter_report(report, (11,), ())
    assert [a.name for a in by_pid.apps] == ["gunicorn[10,11]"]
    assert {e.port for e in by_pid.edges} == {8080}
    assert filter_report(report, (), ()) is report


def test_json_body_is_serialisable_and_keeps_the_numbers() -> None:
    report = _report()
    doc = json.loads(json.dumps(json_document("watch", watch_json(report, check_watch(report)))))
    assert doc["command"] == "watch" and doc["connections"] == 10
    gun = doc["apps"][0]
    assert (gun["self_requests"], gun["external_requests"], gun["self_factor"]) == (6, 3, 2.0)
    assert gun["per_path_factor"] == {"/work": 2.0}
    assert {f["code"] for f in doc["findings"]} >= {"SELF_CALL", "SELF_CALL_ON_HOT_PATH"}
    assert "instances" not in doc

"""Pane rows of ``loopscope top`` from a recorded self-calling window."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

from loopscope.analysis.apps import AppKey
from loopscope.tui.panes import (
    Filter,
    SortKey,
    app_rows,
    edge_detail,
    edge_paths,
    edge_rows,
    finding_rows,
    listener_rows,
    parse_filter,
    sparkline,
    status_line,
)
from loopscope.tui.source import make_frame


def _data() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tui_watch_data", Path(__file__).with_name("watch_data.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FRAME = make_frame(_data().self_calling_window())


def test_sparkline_and_filter_parsing() -> None:
    assert sparkline([0, 1, 2, 4], 4) == " ▃▅█"
    assert sparkline([0, 0]) == "  " and sparkline([]) == ""
    assert sparkline(list(range(20)), 5)[-1] == "█" and len(sparkline(list(range(20)), 5)) == 5
    assert parse_filter(":8080") == Filter(port=8080) == parse_filter(" 8080 ")
    assert parse_filter("gunicorn") == Filter(text="gunicorn")
    assert parse_filter("99999") == Filter(text="99999") and not parse_filter("  ").active


def test_apps_pane_rates_amplification_and_self_mark() -> None:
    rows = app_rows(FRAME)
    assert rows[0][:5] == ("gunicorn[10,11]", "8080", "0.4", "1.2", "3")
    assert rows[0][6] == "self" and rows[1][0] == "nginx[20]" and rows[1][6] == ""
    assert rows[0][5].strip() == "████"  # inbound (4/s) in seconds 1..4 of the 10 buckets
    assert [r[0] for r in app_rows(FRAME, SortKey.NAME)] == ["gunicorn[10,11]", "nginx[20]"]
    assert [r[0] for r in app_rows(FRAME, flt=Filter(port=80))] == ["nginx[20]"]
    assert [r[0] for r in app_rows(FRAME, flt=Filter(text="GUNI"))] == ["gunicorn[10,11]"]


def test_edges_pane_and_detail() -> None:
    rows = edge_rows(FRAME)
    assert rows == [
        ("gunicorn[10,11]", "gunicorn[10,11]:8080", "1.2", "12", "SELF"),
        ("loadgen[99]", "gunicorn[10,11]:8080", "0.4", "4", ""),
    ]
    assert [r[0] for r in edge_rows(FRAME, SortKey.NAME)] == ["gunicorn[10,11]", "loadgen[99]"]
    assert edge_rows(FRAME, flt=Filter(text="loadgen"))[0][0] == "loadgen[99]"
    assert edge_rows(FRAME, flt=Filter(port=80)) == []
    detail = edge_detail(FRAME, 0)
    assert "(SELF-CALL)" in detail and "client pids: 11" in detail and "12 in 10.0 s" in detail
    assert edge_detail(FRAME, 5) == "no such edge"


def test_listeners_findings_and_status() -> None:
    assert listener_rows(FRAME) == [
        ("nginx[20] 127.0.0.1:80", "4/4", "4", "▃█", "full"),
        ("gunicorn[10,11] 127.0.0.1:8080", "0/128", "0", "  ", ""),
    ]
    codes = [r[1] for r in finding_rows(FRAME)]
    assert codes[:2] == ["SELF_CALL_ON_HOT_PATH", "ACCEPT_QUEUE_SATURATED"] and "SELF_CALL" in codes
    line = status_line(FRAME, flt=Filter(port=8080))
    assert line == "sources: ebpf_sockops,sock_diag_destroy | lost 0 | filter: :8080"
    assert status_line(None).startswith("starting")


def test_edge_detail_http_paths_per_edge() -> None:
    frame = make_frame(_data().http_window())
    assert [r[0] for r in edge_rows(frame)] == ["gunicorn[10,11]", "loadgen[99]", "external"]
    self_edge, loadgen, external = frame.report.edges
    assert edge_paths(frame.report, self_edge) == ("edge", {"GET /leaf": 12})
    assert edge_paths(frame.report, loadgen) == ("edge", {"GET /work": 4})
    assert edge_paths(frame.report, external) == ("edge", {"GET /health": 2})
    detail = edge_detail(frame, 0)
    assert "HTTP requests: 12" in detail and detail.endswith("HTTP paths:\n  12  GET /leaf")
    assert edge_detail(frame, 1).endswith("HTTP paths:\n  4  GET /work")
    assert "+1 more paths" in edge_detail(frame, 1, max_paths=0)
    # without --http: no paths line at all
    assert "HTTP paths" not in edge_detail(FRAME, 0) and "n/a (run with --http)" in edge_detail(
        FRAME, 0
    )


def test_edge_paths_fall_back_to_the_server_app_when_pidless_edges_share_a_port() -> None:
    frame = make_frame(_data().http_window())
    external = frame.report.edges[2]
    unknown = dataclasses.replace(external, client="?", client_app=AppKey(comm="?"))
    report = dataclasses.replace(frame.report, edges=(*frame.report.edges, unknown))
    assert edge_paths(report, external) == ("server", {"? /work": 4, "? /health": 2})
    assert edge_paths(report, frame.report.edges[0]) == ("edge", {"GET /leaf": 12})


def test_short_lived_clients_are_one_edge_row() -> None:
    frame = make_frame(_data().short_lived_clients(50))
    assert edge_rows(frame) == [
        ("curl (50 processes)", "apache2[10]:8095", "5.0", "50", ""),
        ("apache2[10]", "apache2[10]:8095", "0.2", "2", "SELF"),
    ]
    detail = edge_detail(frame, 0)
    assert "client pids: 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009 (+40 more)" in (
        detail
    )

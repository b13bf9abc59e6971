"""``loopscope top`` in Textual's headless Pilot at 80x24 on a recorded self-calling window: every pane's
content, sort, filter, pause, Enter for an edge's detail, help and quit."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("textual")

from textual.widgets import DataTable, Static

from loopscope.tui.app import TopApp
from loopscope.tui.source import StaticSource, make_frame


def _data() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tui_watch_data", Path(__file__).with_name("watch_data.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cells(table: DataTable) -> list[list[str]]:  # type: ignore[type-arg]
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def _styles(table: DataTable) -> list[str]:  # type: ignore[type-arg]
    return [str(table.get_row_at(i)[0].style) for i in range(table.row_count)]


def _run(check: object) -> None:
    asyncio.run(check())  # type: ignore[operator]


def test_panes_at_80x24() -> None:
    source = StaticSource(make_frame(_data().self_calling_window()))

    async def check() -> None:
        app = TopApp(source, refresh_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            apps = _cells(app.query_one("#apps", DataTable))
            assert apps[0][:5] == ["gunicorn[10,11]", "8080", "0.4", "1.2", "3"]
            edges = app.query_one("#edges", DataTable)
            assert _cells(edges) == [
                ["gunicorn[10,11]", "gunicorn[10,11]:8080", "1.2", "12", "SELF"],
                ["loadgen[99]", "gunicorn[10,11]:8080", "0.4", "4", ""],
            ]
            assert _styles(edges) == ["bold red", ""]  # the self-call row is highlighted
            listeners = _cells(app.query_one("#listeners", DataTable))
            assert listeners[0][:3] == ["nginx[20] 127.0.0.1:80", "4/4", "4"]
            findings = _cells(app.query_one("#findings", DataTable))
            assert findings[0][:3] == ["high", "SELF_CALL_ON_HOT_PATH", "gunicorn[10,11]"]
            assert "Inline the internal call" in findings[0][3]
            status = str(app.query_one("#status", Static).render())
            assert status.startswith("sources: ebpf_sockops,sock_diag_destroy | lost 0")
            title = str(app.query_one("#title", Static).render())
            assert "2 conns" not in title and "16 conns, 1 self-call edges" in title
            # every pane is on screen at 80x24
            for pane in ("#apps", "#edges", "#listeners", "#findings", "#status"):
                region = app.query_one(pane).region
                assert region.height >= 1 and region.bottom <= 24, (pane, region)
            await pilot.press("q")
        assert app.return_code == 0

    _run(check)


def test_keys_sort_filter_pause_detail_help() -> None:
    source = StaticSource(make_frame(_data().self_calling_window()))

    async def check() -> None:
        app = TopApp(source, refresh_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("s", "s")  # rate -> self -> name
            assert app.sort.value == "name"
            assert "sort name" in str(app.query_one("#title", Static).render())
            await pilot.press("f")
            await pilot.press(*":80", "enter")
            assert _cells(app.query_one("#apps", DataTable))[0][0] == "nginx[20]"
            assert app.query_one("#edges", DataTable).row_count == 0
            assert "filter: :80" in str(app.query_one("#status", Static).render())
            await pilot.press("f", "enter")  # empty clears
            assert app.query_one("#edges", DataTable).row_count == 2
            await pilot.press("p")
            assert source.paused and "PAUSED" in str(app.query_one("#title", Static).render())
            await pilot.press("p")
            assert not source.paused
            app.query_one("#edges", DataTable).focus()
            await pilot.press("enter")  # name order: gunicorn's self-call edge first
            await pilot.pause()
            detail = str(app.screen.query_one("#detail", Static).render())
            assert "gunicorn[10,11] -> gunicorn[10,11]:8080  (SELF-CALL)" in detail
            assert "client pids: 11" in detail
            await pilot.press("escape")
            await pilot.press("question_mark")
            await pilot.pause()
            assert "q  quit" in str(app.screen.query_one("#help", Static).render())
            await pilot.press("escape", "q")
        assert app.return_code == 0

    _run(check)

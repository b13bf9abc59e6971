"""``loopscope top`` in Textual's headless Pilot at 80x24 on a recorded self-calling window: every pane's
content, sort, filter, pause, Enter for an edge's detail (HTTP paths), help, quit, ``n`` switching
namespace through an injected switcher of recorded data, and 50 short-lived clients as one row."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("textual")

from textual.widgets import DataTable, OptionList, Static

from loopscope.errors import LoopscopeError
from loopscope.tui.app import TopApp
from loopscope.tui.source import NetnsChoice, StaticSource, make_frame


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


class RecordedSwitcher:
    """Namespaces host, blue and gone; each opens a StaticSource of recorded data labelled with it
    (gone raises, as a namespace deleted after it was listed). Logs every open and close in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.opened: list[StaticSource] = []

    def choices(self) -> list[NetnsChoice]:
        return [
            NetnsChoice(spec=None, label="host"),
            NetnsChoice(spec="/run/netns/blue", label="blue"),
            NetnsChoice(spec="/run/netns/gone", label="gone"),
        ]

    def open(self, spec: str | None) -> StaticSource:
        label = "host" if spec is None else spec.rsplit("/", 1)[-1]
        self.log.append(f"open {label}")
        if label == "gone":
            raise LoopscopeError("no network namespace 'gone'")
        window = _data().self_calling_window() if label == "host" else _data().short_lived_clients()
        source = LoggedSource(make_frame(dataclasses.replace(window, netns_label=label)))
        source.log, source.label = self.log, label
        self.opened.append(source)
        return source


class LoggedSource(StaticSource):
    log: list[str]
    label: str

    def close(self) -> None:
        self.log.append(f"close {self.label}")
        super().close()


def test_n_switches_namespace_closing_the_old_session_first() -> None:
    switcher = RecordedSwitcher()
    first = switcher.open(None)

    async def check() -> None:
        app = TopApp(first, refresh_s=0.5, switcher=switcher)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert str(app.query_one("#title", Static).render()).startswith("loopscope top (host)")
            await pilot.press("p")  # paused stays paused across the switch
            await pilot.press("n")
            await pilot.pause()
            listing = app.screen.query_one("#netns", OptionList)
            labels = [str(listing.get_option_at_index(k).prompt) for k in range(3)]
            assert labels == ["host  (now)", "blue", "gone"] and listing.highlighted == 0
            await pilot.press("down", "enter")
            await pilot.pause()
            await pilot.pause()
            assert switcher.log == ["open host", "close host", "open blue"]
            assert first.closed and app.source is switcher.opened[-1] and app.netns.label == "blue"
            assert switcher.opened[-1].paused
            title = str(app.query_one("#title", Static).render())
            assert title.startswith("loopscope top (blue) last 10 s") and "PAUSED" in title
            edges = _cells(app.query_one("#edges", DataTable))
            assert edges[0][:4] == ["curl (50 processes)", "apache2[10]:8095", "5.0", "50"]
            # a namespace that vanished: the current one reopens, and the status says why
            await pilot.press("n")
            await pilot.pause()
            await pilot.press("down", "enter")
            await pilot.pause()
            await pilot.pause()
            assert switcher.log[3:] == ["close blue", "open gone", "open blue"]
            assert app.netns.label == "blue" and app.switches == 1
            assert str(app.query_one("#title", Static).render()).startswith("loopscope top (blue)")
            # Escape keeps the current namespace
            await pilot.press("n")
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
            assert len(switcher.log) == 6 and isinstance(app.screen.query_one("#edges"), DataTable)
            await pilot.press("q")
        assert app.return_code == 0
        app.source.close()  # what the CLI does after run(): the last source is closed too
        assert all(s.closed for s in switcher.opened)

    _run(check)


def test_n_without_a_switcher_says_so() -> None:
    source = StaticSource(make_frame(_data().self_calling_window()))

    async def check() -> None:
        app = TopApp(source, refresh_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("n")
            await pilot.pause()
            assert "no namespace switching" in str(app.query_one("#status", Static).render())
            await pilot.press("q")

    _run(check)


def test_fifty_short_lived_clients_are_one_row() -> None:
    source = StaticSource(make_frame(_data().short_lived_clients(50)))

    async def check() -> None:
        app = TopApp(source, refresh_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            edges = app.query_one("#edges", DataTable)
            assert _cells(edges) == [
                ["curl (50 processes)", "apache2[10]:8095", "5.0", "50", ""],
                ["apache2[10]", "apache2[10]:8095", "0.2", "2", "SELF"],
            ]
            await pilot.press("enter")
            await pilot.pause()
            detail = str(app.screen.query_one("#detail", Static).render())
            assert detail.startswith("curl (50 processes) -> apache2[10]:8095")
            assert "(+40 more)" in detail
            await pilot.press("escape", "q")

    _run(check)


def test_enter_shows_the_http_paths_of_the_edge() -> None:
    source = StaticSource(make_frame(_data().http_window()))

    async def check() -> None:
        app = TopApp(source, refresh_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("down", "enter")  # loadgen -> gunicorn
            await pilot.pause()
            detail = str(app.screen.query_one("#detail", Static).render())
            assert "loadgen[99] -> gunicorn[10,11]:8080" in detail
            assert "HTTP paths:\n  4  GET /work" in detail
            await pilot.press("escape", "up", "enter")
            await pilot.pause()
            detail = str(app.screen.query_one("#detail", Static).render())
            assert "(SELF-CALL)" in detail and "12  GET /leaf" in detail
            await pilot.press("escape", "q")

    _run(check)
